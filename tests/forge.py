"""What a forger can always do to a bundle after editing its files: recompute the hashes and the digest.

The bundle then reads cleanly; only replay (numbers recomputed from actions) and verify (the scheduler re-run)
can catch what was changed. Tests use this to show exactly that."""

import json
from pathlib import Path

from bench.experiments.runs.bundle_checks import digest
from bench.experiments.runs.bundles import sha256_file


def resign(bundle: Path, edit=None) -> dict:
    """Recompute every listed file's SHA-256 and size and the manifest's digest; `edit(manifest)` first."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    if edit is not None:
        edit(manifest)
    for name in manifest["files"]:
        if manifest.get("schema_version", 1) >= 2:
            manifest["files"][name] = {"sha256": sha256_file(bundle / name), "bytes": (bundle / name).stat().st_size}
        else:
            manifest["files"][name] = sha256_file(bundle / name)
    if manifest.get("schema_version", 1) >= 2:
        manifest["digest"] = digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return manifest
