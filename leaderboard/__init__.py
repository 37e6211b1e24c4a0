"""The leaderboard: submissions (result bundles) validated by replay, paired rankings, a static offline site.

    rules.py       what makes a submission valid, and the ranking rule
    submission.py  finding bundles, pooling them into entries, submission.toml
    validate.py    the checks, one line per failure
    site.py        the static Plotly site
    results/       the committed bundles of the built-in schedulers
"""
