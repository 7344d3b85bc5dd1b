"""`farm sweep`'s progress lines (leaderboard.Progress, a Tune callback) driven with fake trials, in the order Tune
calls it: a trial's final result, its ASHA stop and its error reach the callback while Tune still calls it RUNNING."""

from dataclasses import dataclass, field

from farm.sweep.leaderboard import Progress


@dataclass
class FakeTrial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    status: str = "PENDING"
    last_result: dict = field(default_factory=dict)
    error_file: str | None = None


def epoch(n: int, f1: float, **more) -> dict:
    return {"epoch": n, "cv/val_f1_mean": f1, "folds_running": 3, "final": 0, **more}


def final(f1: float, **more) -> dict:
    return {"epoch": 3, "cv/val_f1_mean": f1, "cv/test_f1_mean": f1 - 0.05, "cv/test_f1_std": 0.01, "final": 1, **more}


def result(cb, trials, trial, res) -> None:
    """As Tune does: the callbacks see the result, then the trial's last_result is updated."""
    cb.on_trial_result(iteration=0, trials=trials, trial=trial, result=res)
    trial.last_result = res


def lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def counts(line: str) -> str:
    return line.split(" | ")[1]


def test_two_finished_trials_are_done_and_no_longer_running(capsys):
    cb, a, b = Progress(2), FakeTrial("a", "RUNNING"), FakeTrial("b", "RUNNING")
    trials = [a, b]
    result(cb, trials, a, epoch(1, 0.2))
    result(cb, trials, b, epoch(1, 0.1))
    result(cb, trials, a, final(0.3))  # Tune: a is still RUNNING here
    a.status = "TERMINATED"
    cb.on_trial_complete(iteration=0, trials=trials, trial=a)  # nothing new to say
    result(cb, trials, b, final(0.4))
    b.status = "TERMINATED"
    cb.on_trial_complete(iteration=0, trials=trials, trial=b)
    out = lines(capsys)
    assert [counts(line) for line in out] == [
        "0/2 done, 2 running, 0 stopped early, 0 failed; no result yet",
        "0/2 done, 2 running, 0 stopped early, 0 failed; no result yet",
        "1/2 done, 1 running, 0 stopped early, 0 failed; best 0.300 (a)",
        "2/2 done, 0 running, 0 stopped early, 0 failed; best 0.400 (b)",
    ]
    assert "trial a finished" in out[2] and "trial b finished" in out[3]


def test_a_trial_asha_stops_is_stopped_early_and_a_failed_one_is_failed(capsys):
    cb, a, b = Progress(2, "outer fold P1: "), FakeTrial("a", "RUNNING"), FakeTrial("b")
    trials = [a, b]
    result(cb, trials, a, epoch(1, 0.2))
    result(cb, trials, a, epoch(1, 0.2))  # another result of the same epoch: no new line
    result(cb, trials, a, epoch(2, 0.1, done=True))  # ASHA's stop: Tune marks the result done, a is still RUNNING
    cb.on_trial_complete(iteration=0, trials=trials, trial=a)  # Tune's stop_trial, before a is TERMINATED
    a.status, b.status = "TERMINATED", "RUNNING"
    result(cb, trials, b, epoch(1, 0.3))
    result(cb, trials, b, final(0.3, failed="fold P2 diverged at epoch 2"))  # no line: the error says why
    b.status, b.error_file = "ERROR", "/sweeps/x/b/error.txt"  # Tune sets ERROR, then calls on_trial_error
    cb.on_trial_error(iteration=0, trials=trials, trial=b)
    out = lines(capsys)
    assert [counts(line) for line in out] == [
        "0/2 done, 1 running, 0 stopped early, 0 failed; no result yet",
        "0/2 done, 0 running, 1 stopped early, 0 failed; no result yet",
        "0/2 done, 1 running, 1 stopped early, 0 failed; no result yet",
        "0/2 done, 0 running, 1 stopped early, 1 failed; no result yet",
    ]
    assert all("] outer fold P1: trial " in line for line in out)
    assert "trial a epoch 2" in out[1] and "stopped early by ASHA" in out[1]
    assert "trial b FAILED: fold P2 diverged at epoch 2 (/sweeps/x/b/error.txt)" in out[3]


def test_trials_ended_before_a_resume_count_as_done_or_stopped(capsys):
    finished = FakeTrial("a", "TERMINATED", final(0.3))
    stopped = FakeTrial("b", "TERMINATED", epoch(1, 0.1, done=True))
    c = FakeTrial("c", "RUNNING")
    cb = Progress(3)
    result(cb, [finished, stopped, c], c, epoch(1, 0.2))
    assert counts(lines(capsys)[0]) == "1/3 done, 1 running, 1 stopped early, 0 failed; no result yet"


@dataclass
class FakeResult:
    """What `leaderboard` reads of a Tune Result: its last metrics (Tune's `done` included), error and config."""

    metrics: dict
    error: Exception | None = None
    path: str = ""
    config: dict = field(default_factory=dict)


def test_leaderboard_tells_a_trial_cut_off_from_one_asha_stopped_and_the_hint_counts_it():
    from farm.sweep.leaderboard import leaderboard
    from farm.sweep.run import SweepOptions, resume_hint

    grid = [
        FakeResult({**final(0.6), "trial_id": "a", "done": True}),
        FakeResult({**epoch(1, 0.3), "trial_id": "b", "done": True}),  # ASHA's stop: Tune marks the result done
        FakeResult({**epoch(2, 0.5), "trial_id": "c", "done": False}),  # Ctrl-C in its third epoch
        FakeResult({"trial_id": "d"}),  # never reported
        FakeResult({**epoch(1, 0.2), "trial_id": "e"}, error=RuntimeError("boom")),
    ]
    rows = leaderboard(grid)
    assert {r["trial"]: r["status"] for r in rows} == {"a": "finished", "b": "stopped", "c": "interrupted",
                                                        "d": "interrupted", "e": "failed"}  # fmt: skip
    opts = SweepOptions(name="s1")
    hint = resume_hint(opts, rows, 5)
    assert hint == "3 of 5 trials ended (2 interrupted mid-way); continue with: farm sweep --resume --name s1"
    ended = [r for r in rows if r["trial"] in ("a", "b")]
    assert resume_hint(opts, ended, 2) is None and resume_hint(opts, ended, 4).startswith("2 of 4 trials ended;")


def test_the_leaderboard_offers_promote_only_when_a_trial_finished():
    from farm.sweep.leaderboard import format_leaderboard, leaderboard
    from farm.sweep.run import SweepOptions

    opts = SweepOptions(name="s1", tracking_uri="sqlite:///elsewhere.db")
    cut = leaderboard([FakeResult({**epoch(1, 0.3), "trial_id": "c", "done": False})])
    assert "c              interrupted" in format_leaderboard(cut, opts, ["P1", "P2", "P3"])
    assert format_leaderboard(cut, opts, ["P1"]).endswith("nothing to register yet (no trial finished)")
    done = leaderboard([FakeResult({**final(0.6), "trial_id": "a", "done": True})])
    assert format_leaderboard(done, opts, ["P1"]).endswith(
        "farm promote --sweep s1 --tracking-uri sqlite:///elsewhere.db"
    )
