"""`turnout router train|eval|probe`: bad input, a small end-to-end run, the shipped eval,
and a probe run through the openai client."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.cli import main
from router.data import shipped_path

TRAIN = json.loads(shipped_path("dcrouter_train.json").read_text())
TEST = json.loads(shipped_path("dcrouter_test.json").read_text())


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["router", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(path, rows) -> str:
    path.write_text(json.dumps(rows))
    return str(path)


@pytest.mark.parametrize("case", ["missing", "not-json", "bad-score", "no-question", "unknown-price"])
def test_train_rejects_bad_data_with_one_line(tmp_path, capsys, case):
    data = tmp_path / "d.json"
    rows = {"not-json": None, "bad-score": [{"question": "q", "scores": {"m": 1.5}}],
            "no-question": [{"scores": {"m": 1.0}}],
            "unknown-price": [{"question": f"q{i}", "scores": {"no-such-model": 1.0}} for i in range(30)]}
    if case == "not-json":
        data.write_text("{oops\n[also bad")
    elif case != "missing":
        write(data, rows[case])
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "a.npz"), "--exclude", "none")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("turnout router:")
    assert not (tmp_path / "a.npz").exists()


def test_bad_learner_artifact_and_probe_arguments(tmp_path, capsys):
    assert run(capsys, "train", "--learners", "knn,forest")[0] == 2
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    code, _, err = run(capsys, "eval", "--artifact", str(junk))
    assert code == 2 and "corrupt" in err
    assert run(capsys, "probe", "--model", "m", "--set", str(shipped_path("probe_set.jsonl")),
               "--url", "ftp://x")[0] == 2
    assert run(capsys, "probe", "--model", "m", "--set", str(tmp_path / "none.jsonl"), "--url", "http://x")[0] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "regex": "("}\n')
    code, _, err = run(capsys, "probe", "--model", "m", "--set", str(bad), "--url", "http://x")
    assert code == 2 and "invalid regex" in err


def test_train_then_eval_end_to_end(tmp_path, capsys):
    data = write(tmp_path / "train.json", TRAIN[:400])
    test = write(tmp_path / "test.json", TEST[:120])
    art = tmp_path / "a.npz"
    code, _, err = run(capsys, "train", "--data", data, "--out", str(art), "--learners", "knn,logistic")
    assert code == 0, err
    assert "chosen learner" in err
    report = tmp_path / "r.json"
    code, out, err = run(capsys, "eval", "--data", test, "--artifact", str(art), "--json", str(report))
    assert code == 0, err
    assert "oracle" in out and "APGR" in out
    rep = json.loads(report.read_text())
    assert rep["questions"] == 120
    assert set(rep["routers"]) == {"knn", "logistic", "random", "always-cheapest", "always-best-single", "oracle"}
    for row in rep["routers"].values():
        assert {"quality", "cost", "cost_ratio_at_best", "cost_ratio_at_95", "quality_at_best_cost"} <= set(row)
    assert rep["routers"]["oracle"]["quality"] >= rep["routers"]["always-best-single"]["quality"]
    # eval data that scores models the artifact does not know
    other = write(tmp_path / "o.json", [{"question": "q", "scores": {"x": 1.0, "y": 0.0}}])
    assert run(capsys, "eval", "--data", other, "--artifact", str(art))[0] == 2


def test_eval_with_no_arguments_uses_the_shipped_artifact_and_test_split(tmp_path, capsys):
    code, out, _ = run(capsys, "eval", "--json", str(tmp_path / "r.json"))
    assert code == 0
    assert out.startswith("500 questions, 9 models")
    rep = json.loads((tmp_path / "r.json").read_text())
    best = rep["routers"]["always-best-single"]
    assert rep["reference"]["best_model"] == "llama-3.1-nemotron-51b-instruct"
    assert best["quality"] == pytest.approx(0.563, abs=5e-4)
    chosen = rep["routers"][rep["chosen"]]
    assert chosen["quality_at_best_cost"] > best["quality"]  # cheaper than the best model and no worse
    assert chosen["cost_ratio_at_95"] < 0.5


class _Answers(BaseHTTPRequestHandler):
    """A stand-in OpenAI-compatible endpoint: right on even questions, wrong on odd ones."""

    seen: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        _Answers.seen.append(body["model"])
        items = [json.loads(line) for line in shipped_path("probe_set.jsonl").read_text().splitlines()]
        idx = next(i for i, it in enumerate(items) if it["question"] == question)
        item = items[idx]
        right = item.get("answer") or {"\\bAu\\b": "Au"}.get(item.get("regex"), "")
        reply = right if idx % 2 == 0 else "I am not sure."
        out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": reply}}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_probe_scores_a_model_and_appends_training_records(tmp_path, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out_file = tmp_path / "probe.jsonl"
    try:
        code, out, err = run(capsys, "probe", "--model", "smollm2-135m", "--router-name", "smollm2",
                             "--set", str(shipped_path("probe_set.jsonl")),
                             "--url", f"http://127.0.0.1:{server.server_port}/v1", "--out", str(out_file))
    finally:
        server.shutdown()
    assert code == 0, err
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 50 and set(_Answers.seen) == {"smollm2-135m"}
    assert all(set(r["scores"]) == {"smollm2"} and r["output_tokens"] == {"smollm2": 7} for r in rows)
    items = [json.loads(line) for line in shipped_path("probe_set.jsonl").read_text().splitlines()]
    answered = [r["scores"]["smollm2"] for i, (r, it) in enumerate(zip(rows, items, strict=True))
                if i % 2 == 0 and "answer" in it]
    assert len(answered) > 15 and all(s == 1.0 for s in answered)
    assert sum(r["scores"]["smollm2"] for r in rows[1::2]) == 0
    assert "mean probe score" in out
