"""Traces: the canonical format's validation, the GenTD26 and Azure importers (on small files written here in the
raw formats), episode windows, time scaling, model ranks, the shipped Azure traces and the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from bench.core.errors import BenchError, ConfigError
from tasks.traces import (
    SHIPPED_TRACES,
    Trace,
    TraceConfig,
    TraceError,
    convert_trace,
    episode_windows,
    import_trace,
    map_by_rank,
    model_rank_index,
    model_ranks,
    read_trace,
    replay_windows,
    request_rate,
    rescale_to_rate,
    shipped_trace,
    speed_up,
    trace_sha256,
    window_trace,
    write_trace,
)

HEADER = ("gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,negative_prompt_length,"
          "num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,num_lora")
# A dozen rows in GenTD26's raw format; the comment says what the default rules do with each.
GENTD26_ROWS = [
    "2024-11-15 16:57:40,TXT_2_IMG,FAILED,8.0,G0001,40.0,,4.0,30.0,M0001,0",  # 1 status FAILED (before the first kept row)
    "2024-11-15 16:57:50,TXT_2_IMG,SUCCEED,32.0,G0000,63.0,26.0,1.0,30.0,M0000,0",  # 2 kept, t = 0
    "2024-11-15 16:58:10,IMG_2_IMG,SUCCEED,20.0,G0002,50.0,26.0,1.0,40.0,M0002,1",  # 3 type IMG_2_IMG
    "2024-11-15 16:59:00,TXT_2_IMG,PENDING,0.0,G0003,,,,,,0",  # 4 status PENDING (blank fields)
    "2024-11-15 16:59:00,TXT_2_IMG,SUCCEED,28.0,G0004,52.0,26.0,4.0,30.0,M0001,0",  # 5 kept, t = 70 (tie with 6)
    "2024-11-15 16:59:00,TXT_2_IMG,SUCCEED,28.0,G0005,52.0,26.0,8.0,40.0,M0002,0",  # 6 kept, t = 70
    "2024-11-15 17:00:00,INPAINTING,SUCCEED,22.0,G0006,30.0,26.0,1.0,30.0,M0001,0",  # 7 type INPAINTING
    "2024-11-15 17:01:40,TXT_2_IMG,SUCCEED,30.0,G0007,60.0,26.0,2.0,30.0,,0",  # 8 blank model
    "2024-11-15 17:01:40,TXT_2_IMG,SUCCEED,30.0,G0007,60.0,26.0,2.0,30.0,M0001,0",  # 9 kept, t = 230
    "2024-11-15 17:01:40,TXT_2_IMG,SUCCEED,30.0,G0007,60.0,26.0,2.0,30.0,M0001,0",  # 10 kept, exact duplicate of 9
    "2024-11-15 17:03:20,TXT_2_IMG,PROCESSING,0.0,G0008,60.0,26.0,1.0,30.0,M0003,0",  # 11 status PROCESSING
    "2024-11-15 17:04:00,TXT_2_IMG,SUCCEED,31.0,G0010,45.0,26.0,1.0,,M0003,0",  # 12 blank steps
    "2024-11-15 17:05:00,TXT_2_IMG,SUCCEED,25.0,G0009,45.0,26.0,1.0,20.0,M0003,0",  # 13 kept, t = 430
]
AZURE_ROWS = [
    "2023-11-16 18:15:46.6805900,374,44",
    "2023-11-16 18:15:50.9951690,396,109",
    "2023-11-16 18:15:50.9951690,879,31",  # equal timestamps
    ",100,10",  # blank TIMESTAMP
    "2023-11-16 18:15:48.0000010,10,1",  # out of order: sorted
    "2023-11-16 18:16:01.1234560,1000,200",
]


def gentd26_file(tmp_path: Path, rows=GENTD26_ROWS, newline="\n", name="lora_request_trace.csv") -> Path:
    path = tmp_path / name
    path.write_bytes((newline.join([HEADER, *rows]) + newline).encode())
    return path


def azure_file(tmp_path: Path, rows=AZURE_ROWS) -> Path:
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_bytes("\r\n".join(["TIMESTAMP,ContextTokens,GeneratedTokens", *rows]).encode())  # CRLF, no final newline
    return path


def make_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- importers --------------------------------------------------------------------------------------------

def test_gentd26_import_applies_the_stated_rules(tmp_path):
    src = gentd26_file(tmp_path)
    out = tmp_path / "out" / "gentd26.parquet"
    out.parent.mkdir()
    report = import_trace("gentd26", src, out)
    assert report.rows_read == 13 and report.rows_kept == 6
    assert report.dropped == {
        "predict_type = IMG_2_IMG": 1, "predict_type = INPAINTING": 1,
        "predict_status = FAILED": 1, "predict_status = PENDING": 1, "predict_status = PROCESSING": 1,
        "blank num_inference_steps": 1, "blank checkpoint_model_version_id": 1,
    }
    assert report.duplicates == 1 and report.span_s == 430.0
    tr = read_trace(out)
    assert tr.arrival_s.tolist() == [0.0, 70.0, 70.0, 230.0, 230.0, 430.0]  # from the first *kept* row
    assert tr.model.tolist() == ["M0000", "M0001", "M0002", "M0001", "M0001", "M0003"]  # ties keep file order
    assert tr.steps.tolist() == [30, 30, 40, 30, 30, 20] and tr.images.tolist() == [1, 4, 8, 2, 2, 1]
    assert tr.columns == ("arrival_s", "model", "steps", "images")
    assert tr.metadata["source_sha256"] == trace_sha256(src) and tr.metadata["source_file"] == src.name
    assert tr.metadata["source_first_time"] == "2024-11-15 16:57:50"
    assert report.out_sha256 == trace_sha256(out)
    assert str(tmp_path) not in "".join(tr.metadata.values())  # no machine paths in the file
    assert files_in(out.parent) == {"gentd26.parquet"}


def test_gentd26_keep_options_duplicates_and_crlf(tmp_path):
    src = gentd26_file(tmp_path)
    tr, report = convert_trace("gentd26", src, keep_types=["all"], keep_statuses=["SUCCEED", "FAILED"], drop_duplicates=True)
    assert report.dropped == {"predict_status = PENDING": 1, "predict_status = PROCESSING": 1, "blank num_inference_steps": 1,
                              "blank checkpoint_model_version_id": 1, "exact duplicate of an earlier kept row": 1}
    assert report.rows_kept == 13 - 5 and tr.arrival_s[0] == 0.0 and tr.arrival_s[1] == 10.0  # the FAILED row is now first
    crlf, _ = convert_trace("gentd26", gentd26_file(tmp_path, newline="\r\n", name="crlf.csv"))
    lf, _ = convert_trace("gentd26", src)
    assert np.array_equal(crlf.arrival_s, lf.arrival_s) and np.array_equal(crlf.model, lf.model) and np.array_equal(crlf.steps, lf.steps)


def test_azure_import(tmp_path):
    src = azure_file(tmp_path)
    out = tmp_path / "azure.parquet"
    report = import_trace("azure-llm-2023", src, out)
    assert report.rows_read == 6 and report.rows_kept == 5 and report.dropped == {"blank TIMESTAMP": 1}
    tr = read_trace(out)
    assert tr.columns == ("arrival_s",)
    assert tr.arrival_s == pytest.approx([0.0, 1.319411, 4.314579, 4.314579, 14.442866], abs=1e-9)
    assert tr.metadata["source_first_time"] == "2023-11-16 18:15:46.680590"


def test_import_refuses_to_overwrite_and_force_replaces(tmp_path):
    src, out = azure_file(tmp_path), tmp_path / "a.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="--force") as info:
        import_trace("azure-llm-2023", src, out)
    one_line(info.value)
    assert out.read_bytes() == b"precious"
    import_trace("azure-llm-2023", src, out, force=True)
    assert read_trace(out).n_requests == 5
    assert files_in(tmp_path) == {"a.parquet", src.name}


def test_import_output_is_byte_for_byte_reproducible(tmp_path):
    src = gentd26_file(tmp_path)
    a = import_trace("gentd26", src, tmp_path / "a.parquet")
    b = import_trace("gentd26", src, tmp_path / "b.parquet")
    assert a.out_sha256 == b.out_sha256


BAD_GENTD26 = [
    (lambda r: r[:4] + ["2024-13-45 99:00:00" + r[4][19:]] + r[5:], 5, "gmt_create"),
    (lambda r: r[:5] + [r[5].replace(",40.0,M0002", ",forty,M0002")] + r[6:], 6, "num_inference_steps"),
    (lambda r: r[:5] + [r[5].replace(",40.0,M0002", ",0.0,M0002")] + r[6:], 6, "num_inference_steps"),
    (lambda r: r[:1] + [r[1].replace(",1.0,30.0,M0000", ",-1.0,30.0,M0000")] + r[2:], 2, "num_images_per_prompt"),
    (lambda r: r[:1] + [r[1].replace(",1.0,30.0,M0000", ",1.5,30.0,M0000")] + r[2:], 2, "num_images_per_prompt"),
    (lambda r: r[:2] + [r[2] + ",extra"] + r[3:], 3, None),
    (lambda r: r[:2] + [r[2].rsplit(",", 1)[0]] + r[3:], 3, None),
]


@pytest.mark.parametrize("edit, row, column", BAD_GENTD26, ids=["time", "steps-text", "steps-zero", "images-negative", "images-fraction", "too-many-fields", "too-few-fields"])
def test_bad_gentd26_rows_name_row_and_column_and_write_nothing(tmp_path, edit, row, column):
    src = gentd26_file(tmp_path, rows=edit(list(GENTD26_ROWS)))
    out = tmp_path / "out.parquet"
    with pytest.raises(TraceError) as info:
        import_trace("gentd26", src, out)
    text = one_line(info.value)
    assert (f"row {row}, column {column} = " if column else f"row {row} = ") in text and src.name in text
    assert (info.value.row, info.value.column) == (row, column)
    assert files_in(tmp_path) == {src.name}  # no output, no temporary file


@pytest.mark.parametrize(
    "make, fmt, fragment",
    [
        (lambda d: azure_file(d, rows=AZURE_ROWS[:2] + ["16/11/2023 18:15:50,1,1"]), "azure-llm-2023", "row 3, column TIMESTAMP"),
        (lambda d: azure_file(d, rows=[]), "azure-llm-2023", "rows = 0"),
        (lambda d: make_file(d / "empty.csv", ""), "gentd26", "file = '<empty>'"),
        (lambda d: make_file(d / "x.csv", "gmt_create,predict_type\n2024-11-15 16:57:50,TXT_2_IMG\n"), "gentd26", "column predict_status = <missing>"),
        (lambda d: gentd26_file(d, rows=[GENTD26_ROWS[0]]), "gentd26", "at least one kept request"),
        (lambda d: azure_file(d), "alibaba-2020", "format = 'alibaba-2020'"),
        (lambda d: d / "missing.csv", "gentd26", "an existing trace file"),
        # outside the nanosecond range a date wrapped around silently (arrival 1.94e9 s instead of 3.2e11 s)
        (lambda d: azure_file(d, rows=["0001-01-01 00:00:00.0000000,1,1", "9999-12-31 00:00:00.0000000,1,1"]), "azure-llm-2023",
         "row 1, column TIMESTAMP = '0001-01-01 00:00:00.0000000' is not allowed; expected a timestamp between 1677-09-22 and 2262-04-11"),
        (lambda d: gentd26_file(d, rows=[GENTD26_ROWS[1].replace("2024-11-15", "9999-12-31", 1)] + list(GENTD26_ROWS[2:])), "gentd26",
         "column gmt_create = '9999-12-31"),
    ],
    ids=["azure-time", "azure-header-only", "empty", "missing-column", "nothing-kept", "unknown-format", "missing-file", "azure-year-1-and-9999", "gentd26-year-9999"],
)
def test_bad_import_inputs_fail_in_one_line_and_write_nothing(tmp_path, make, fmt, fragment):
    src = make(tmp_path)
    before = files_in(tmp_path)
    with pytest.raises(BenchError) as info:
        import_trace(fmt, src, tmp_path / "out.parquet")
    assert fragment in one_line(info.value)
    assert files_in(tmp_path) == before


def test_import_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="keep_types = 'TXT2IMG'"):
        convert_trace("gentd26", gentd26_file(tmp_path), keep_types=["TXT2IMG"])
    with pytest.raises(ConfigError, match="unless format = gentd26"):
        convert_trace("azure-llm-2023", azure_file(tmp_path), keep_statuses=["SUCCEED"])
    with pytest.raises(ConfigError, match="a .parquet path"):
        import_trace("azure-llm-2023", azure_file(tmp_path), tmp_path / "out.csv")
    with pytest.raises(ConfigError, match="existing directory"):
        import_trace("azure-llm-2023", azure_file(tmp_path), tmp_path / "no" / "out.parquet")


# --- the canonical format ---------------------------------------------------------------------------------

def write_csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_canonical_csv_reads_sorts_stably_and_round_trips(tmp_path):
    path = write_csv(tmp_path, "arrival_s,origin,model,steps,images,width,height,deadline_s\n"
                               "5.5,1,b,30,1,512,512,\n"
                               "1.0,0,a,20,4,1024,768,30\n"
                               "5.5,2,c,30.0,2,512,512,inf\n"
                               " 0 ,0,d,1,1,8,8,0.5\n")
    tr = read_trace(path)
    assert tr.arrival_s.tolist() == [0.0, 1.0, 5.5, 5.5]
    assert tr.model.tolist() == ["d", "a", "b", "c"] and tr.origin.tolist() == [0, 0, 1, 2]
    assert tr.steps.dtype == np.int64 and tr.steps.tolist() == [1, 20, 30, 30]
    assert tr.deadline_s.tolist() == [0.5, 30.0, np.inf, np.inf]  # blank and inf: no deadline
    for name in ("copy.parquet", "copy.csv"):
        write_trace(tr, tmp_path / name, metadata={"note": "x"})
        back = read_trace(tmp_path / name)
        for c in tr.columns:
            assert np.array_equal(getattr(back, c), getattr(tr, c)), c
    assert read_trace(tmp_path / "copy.parquet").metadata["note"] == "x"


BAD_CSV = [
    ("arrival_s,steps\n1,30\nabc,30\n", "row 2, column arrival_s"),
    ("arrival_s,steps\n1,30\n-0.5,30\n", "row 2, column arrival_s"),
    ("arrival_s,steps\n1,30\nnan,30\n", "row 2, column arrival_s"),
    ("arrival_s,steps\n1,30\ninf,30\n", "row 2, column arrival_s"),
    ("arrival_s,steps\n1,30\n,30\n", "row 2, column arrival_s"),
    ("arrival_s,steps\n1,30\n2,0\n", "row 2, column steps"),
    ("arrival_s,steps\n1,30\n2,2.5\n", "row 2, column steps"),
    ("arrival_s,images\n1,1\n2,1\n3,-2\n", "row 3, column images"),
    ("arrival_s,origin\n1,-1\n", "row 1, column origin"),
    ("arrival_s,model\n1,\n", "row 1, column model"),
    ("arrival_s,deadline_s\n1,0\n", "row 1, column deadline_s"),
    ("arrival_s,prompt\n1,hello\n", "column = 'prompt' is not allowed; expected one of the known columns"),
    ("steps\n30\n", "column arrival_s = <missing> is not allowed"),
    ("arrival_s,steps\n", "rows = 0"),
    ("", "file = '<empty>'"),
    ("arrival_s,steps\n1,30\n2,30,7\n", "row 2 = '3 fields' is not allowed; expected 2 comma-separated fields"),
]


@pytest.mark.parametrize("text, fragment", BAD_CSV)
def test_bad_canonical_csv_gives_one_line_naming_row_and_column(tmp_path, text, fragment):
    path = write_csv(tmp_path, text)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    message = one_line(info.value)
    assert fragment in message and "t.csv" in message


def test_bad_parquet_types_and_format(tmp_path):
    def parquet(frame: pl.DataFrame) -> Path:
        path = tmp_path / "t.parquet"
        frame.write_parquet(path)
        return path

    cases = [
        (pl.DataFrame({"arrival_s": [1.0, 2.0], "steps": ["30", "thirty"]}), "row 2, column steps = 'thirty'"),
        (pl.DataFrame({"arrival_s": [1.0, 2.0], "steps": [30.0, 2.5]}), "row 2, column steps = 2.5"),
        (pl.DataFrame({"arrival_s": [1.0, float("nan")]}), "row 2, column arrival_s"),
        (pl.DataFrame({"arrival_s": [1.0, None]}), "row 2, column arrival_s"),
        (pl.DataFrame({"arrival_s": [True, False]}), "column arrival_s = 'Boolean'"),
        (pl.DataFrame({"arrival_s": [1.0], "model": [7]}), "column model = 'Int64'"),
    ]
    for frame, fragment in cases:
        with pytest.raises(TraceError) as info:
            read_trace(parquet(frame))
        assert fragment in one_line(info.value), frame
    ok = read_trace(parquet(pl.DataFrame({"arrival_s": [3, 1], "steps": [30.0, 20.0]})))  # integers and whole floats are fine
    assert ok.arrival_s.tolist() == [1.0, 3.0] and ok.steps.tolist() == [20, 30]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(TraceError, match="a readable Parquet file"):
        read_trace(tmp_path / "bad.parquet")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(TraceError, match="format = '.json'"):
        read_trace(tmp_path / "t.json")


def test_write_is_atomic_and_leaves_nothing_on_error(tmp_path, monkeypatch):
    tr = Trace(arrival_s=np.array([0.0, 1.0]))
    path = tmp_path / "t.parquet"
    write_trace(tr, path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="does not exist yet"):
        write_trace(tr, path)

    def broken(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(ConfigError, match="writing failed: disk full"):
        write_trace(Trace(arrival_s=np.array([5.0])), path, force=True)
    assert path.read_bytes() == before and files_in(tmp_path) == {"t.parquet"}


# --- windows, scaling, ranks ------------------------------------------------------------------------------

def synthetic(n: int = 5000, span: float = 1000.0, seed: int = 0) -> Trace:
    t = np.sort(np.random.default_rng(seed).uniform(0, span, n))
    t[0], t[-1] = 0.0, span
    models = np.array(["m%d" % i for i in np.random.default_rng(seed + 1).integers(0, 5, n)])
    return Trace(arrival_s=t, model=models)


def test_windows_are_disjoint_whole_and_evaluation_is_later():
    tr = synthetic()
    w = episode_windows(tr, 50.0, train_fraction=0.7)
    assert w.split_s == pytest.approx(700.0)
    assert len(w.train) == 14 and len(w.eval) == 6 and w.skipped == 0
    rows = []
    for x in (*w.train, *w.eval):
        assert x.end_s - x.start_s == pytest.approx(50.0)
        part = tr.arrival_s[x.first:x.stop]
        assert np.all((part >= x.start_s) & (part < x.end_s))
        assert x.count == np.count_nonzero((tr.arrival_s >= x.start_s) & (tr.arrival_s < x.end_s))
        rows.extend(range(x.first, x.stop))
    assert len(rows) == len(set(rows))  # never the same request twice
    assert max(x.end_s for x in w.train) <= w.split_s <= min(x.start_s for x in w.eval)
    last_train = tr.arrival_s[w.train[-1].stop - 1]
    first_eval = tr.arrival_s[w.eval[0].first]
    assert last_train < first_eval
    ep = window_trace(tr, w.eval[2])
    assert ep.n_requests == w.eval[2].count and ep.arrival_s.min() >= 0 and ep.arrival_s.max() < 50.0
    assert ep.model.tolist() == tr.model[w.eval[2].first:w.eval[2].stop].tolist()


def test_windows_skip_sparse_ones_and_validate():
    t = np.concatenate([np.linspace(0, 99, 100), np.linspace(300, 399, 100), [1000.0]])
    w = episode_windows(Trace(arrival_s=t), 100.0, train_fraction=0.5, min_requests=10)
    assert [(x.start_s, x.count) for x in w.train] == [(0.0, 100), (300.0, 100)] and w.skipped >= 3
    assert w.eval == ()  # [500, 1000]: only the last arrival, below min_requests
    assert episode_windows(Trace(arrival_s=t), 100.0, train_fraction=0.0).train == ()
    for kwargs, field in (({"window_s": 0}, "window_s"), ({"window_s": 10, "train_fraction": 1.0}, "train_fraction"),
                          ({"window_s": 10, "min_requests": -1}, "min_requests")):
        with pytest.raises(ConfigError, match=field):
            episode_windows(Trace(arrival_s=t), **kwargs)


def test_time_scaling():
    tr = synthetic()
    assert request_rate(tr) == pytest.approx(4999 / 1000.0)
    assert request_rate(tr, duration_s=500.0) == pytest.approx(10.0)
    fast = speed_up(tr, 4.0)
    assert fast.arrival_s[-1] == 250.0 and request_rate(fast) == pytest.approx(4 * request_rate(tr))
    target = rescale_to_rate(tr, 0.5)
    assert request_rate(target) == pytest.approx(0.5)
    assert np.allclose(np.diff(target.arrival_s) * 0.5, np.diff(tr.arrival_s) * request_rate(tr))  # relative gaps kept
    with pytest.raises(ConfigError):
        speed_up(tr, 0.0)
    with pytest.raises(ConfigError):
        request_rate(Trace(arrival_s=np.array([1.0])))


def test_model_ranks_and_mapping():
    tr = Trace(arrival_s=np.arange(9.0), model=np.array(["M9", "M2", "M2", "M5", "M5", "M1", "M2", "M0", "M0"]))
    ranks = model_ranks(tr)
    assert ranks == ("M2", "M0", "M5", "M1", "M9")  # 3, then 2 and 2 by id, then 1 and 1 by id
    assert map_by_rank(ranks, ["sd15", "sdxl"]) == {"M2": "sd15", "M0": "sdxl", "M5": "sd15", "M1": "sdxl", "M9": "sd15"}
    index = model_rank_index(tr.model, ranks)
    assert index.tolist() == [4, 0, 0, 2, 2, 3, 0, 1, 1]
    assert [["sd15", "sdxl"][r % 2] for r in index] == [map_by_rank(ranks, ["sd15", "sdxl"])[m] for m in tr.model]
    with pytest.raises(ConfigError, match="M7"):
        model_rank_index(np.array(["M2", "M7"]), ranks)
    with pytest.raises(ConfigError):
        map_by_rank(ranks, [])
    with pytest.raises(ConfigError):
        model_ranks(Trace(arrival_s=np.arange(2.0)))


def test_trace_config_and_replay_windows():
    from bench.core.config import from_dict

    cfg = from_dict(TraceConfig, {"source": "azure-llm-2023-conv", "window_s": 60, "rate_per_s": 11.06})
    trace, w = replay_windows(cfg)
    assert request_rate(trace) == pytest.approx(11.06)  # twice the recorded ~5.53 requests/s: half the span
    assert trace.span_s == pytest.approx(3501.721937 / 2, rel=1e-3)
    assert len(w.train) + len(w.eval) + w.skipped == int(0.8 * trace.span_s // 60) + int(0.2 * trace.span_s // 60)
    _, w2 = replay_windows(cfg, rate_per_s=5.53 / 2)  # the engine's rate overrides the config's
    assert w2.split_s > 2 * w.split_s
    scaled, _ = replay_windows(from_dict(TraceConfig, {"source": "azure-llm-2023-conv", "window_s": 60, "time_scale": 2}))
    assert scaled.arrival_s[-1] == pytest.approx(3501.721937 / 2)
    for data, field in (({"source": "x", "window_s": 1, "time_scale": 2, "rate_per_s": 1}, "rate_per_s"),
                        ({"source": "x", "window_s": 1, "train_fraction": 1.0}, "train_fraction"),
                        ({"source": "x", "window_s": 0}, "window_s")):
        with pytest.raises(ConfigError) as info:
            from_dict(TraceConfig, data, "tasks.trace")
        assert info.value.field == f"tasks.trace.{field}"
    with pytest.raises(ConfigError, match="shipped trace"):
        replay_windows(from_dict(TraceConfig, {"source": "no-such-trace", "window_s": 60}))


# --- shipped traces ---------------------------------------------------------------------------------------

def test_shipped_azure_traces_match_their_notice():
    notice = (Path(shipped_trace("azure-llm-2023-code")).parent / "AZURE_LLM_2023_NOTICE.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in notice and "Splitwise" in notice and "Azure/AzurePublicDataset" in notice
    for name, rows in (("azure-llm-2023-code", 8819), ("azure-llm-2023-conv", 19366)):
        path = shipped_trace(name)
        tr = read_trace(path)
        assert tr.n_requests == rows and tr.columns == ("arrival_s",) and tr.arrival_s[0] == 0.0
        row = next(line for line in notice.splitlines() if line.startswith(f"| `{SHIPPED_TRACES[name]}`"))
        hashes = re.findall(r"`([0-9a-f]{64})`", row)
        assert hashes == [tr.metadata["source_sha256"], trace_sha256(path)]
        assert path.stat().st_size < 200_000


# --- command line -----------------------------------------------------------------------------------------

def cli() -> typer.Typer:
    from bench.cli import trace

    app = typer.Typer()
    app.command("import")(trace.trace_import)
    app.command("info")(trace.trace_info)
    return app


def test_cli_import_and_info(tmp_path):
    runner = CliRunner()
    src, out = gentd26_file(tmp_path), tmp_path / "g.parquet"
    r = runner.invoke(cli(), ["import", str(src), "--format", "gentd26", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "kept" in r.output and "predict_status = PENDING" in r.output and out.is_file()
    r = runner.invoke(cli(), ["import", str(src), "--format", "gentd26", "--out", str(out)])
    assert r.exit_code == 2 and "--force" in r.output and r.output.count("\n") <= 2
    r = runner.invoke(cli(), ["import", str(src), "--format", "gentd26", "--out", str(out), "--force", "--keep-type", "all", "--keep-status", "all"])
    assert r.exit_code == 0 and read_trace(out).n_requests == 13 - 3  # only the rows with blank fields go
    r = runner.invoke(cli(), ["info", str(out), "--window-s", "100", "--train-fraction", "0.5"])
    assert r.exit_code == 0, r.output
    assert "training windows" in r.output and "evaluation windows" in r.output
    r = runner.invoke(cli(), ["info", "azure-llm-2023-code"])
    assert r.exit_code == 0 and "8,819" in r.output
    r = runner.invoke(cli(), ["info", str(tmp_path / "nope.parquet")])
    assert r.exit_code == 2 and "error:" in r.output


def test_a_trace_too_short_for_one_window_says_so(tmp_path):
    """A trace whose evaluation part holds no whole window was reported as "0 evaluation windows" and nothing more."""
    from bench.cli import app

    short = tmp_path / "short.csv"
    short.write_text("arrival_s\n" + "\n".join(f"{0.5 * i}" for i in range(40)) + "\n")
    r = CliRunner().invoke(app, ["run", "-s", "opt-ts", "--scenario", "azure-code", "--trace", str(short), "-n", "1", "--no-save"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "holds no whole window of" in r.stderr and "a shorter tasks.trace.window_s" in r.stderr, r.stderr


@pytest.mark.parametrize("chunk", [40, 100, 1 << 20])
def test_import_reads_a_chunk_of_lines_at_a_time_with_the_same_result(tmp_path, monkeypatch, chunk):
    """A raw trace is read in pieces of whole lines (a 490 MB GenTD26 file took 8.8 GiB read whole; 1.76 GiB so):
    the trace, the report and the row of an error do not depend on where the pieces end."""
    import tasks.traces as traces

    whole, whole_report = convert_trace("gentd26", gentd26_file(tmp_path, newline="\r\n"), drop_duplicates=True)
    monkeypatch.setattr(traces, "FIELD_CHECK_CHUNK", chunk)
    monkeypatch.setattr(traces._line_chunks, "__defaults__", (chunk,))
    got, report = convert_trace("gentd26", gentd26_file(tmp_path, newline="\r\n"), drop_duplicates=True)
    assert got.to_frame().equals(whole.to_frame()) and report == whole_report
    bad = list(GENTD26_ROWS)
    bad[10] = bad[10] + ",extra"
    with pytest.raises(TraceError) as info:
        convert_trace("gentd26", gentd26_file(tmp_path, rows=bad))
    assert (info.value.row, info.value.column) == (11, None) and "12 fields" in one_line(info.value)
