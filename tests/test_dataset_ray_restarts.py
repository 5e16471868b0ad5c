"""The corpus job on Ray when an actor's process dies: the part runs again on the restarted actor;
a part that kills its actor every time fails the job with the parts left named, the rest kept.

The actors die on cue: a Ray worker setup hook wraps the part worker so that it exits the process
(as an out-of-memory kill or a crash in the runtime would) on parts named by files in a folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import ActorLostError, RayOptions, embed_dataset  # noqa: E402

TEXTS = [f"row {i} " + "word " * (i % 11) + ("한국어" if i % 4 else "") for i in range(300)]


def _dying_hook(triggers: str) -> Callable[[], None]:
    """A worker setup hook (pickled by value: a closure) that makes the part worker exit its process
    on part ``i`` when ``triggers/once-i`` exists (deleting it) or ``triggers/always-i`` does."""

    def hook() -> None:
        import os

        from embedrt.dataset import _ray

        call = _ray._PartWorker.__call__

        def dying(self, batch):  # type: ignore[no-untyped-def]
            for index in batch["part"].tolist():
                once = os.path.join(triggers, f"once-{index}")
                if os.path.exists(once):
                    os.remove(once)
                    os._exit(1)
                if os.path.exists(os.path.join(triggers, f"always-{index}")):
                    os._exit(1)
            return call(self, batch)

        _ray._PartWorker.__call__ = dying  # type: ignore[method-assign]

    return hook


@pytest.fixture(scope="module")
def triggers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("triggers")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _dying_hook(str(folder))})  # fmt: skip
    ray.data.DataContext.get_current().execution_no_progress_timeout_s = 300
    yield folder
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return src


def _vectors(folder: Path) -> np.ndarray:
    return np.stack(pq.read_table(folder).column("embedding").to_numpy(zero_copy_only=False))


def _job(src: Path, out: Path, bundle: Path, **ray_options: int) -> object:
    return embed_dataset(src, out, bundle, backend="ray", ray=RayOptions(num_actors=1, **ray_options),
                         rows_per_part=100, progress=False)  # fmt: skip


def test_a_part_that_killed_its_actor_once_runs_again(
    triggers: Path, corpus: Path, tmp_path: Path, tiny_bert_bundle: Path
) -> None:
    (triggers / "once-1").touch()
    summary = _job(corpus, tmp_path / "out", tiny_bert_bundle, max_restarts=1)
    assert not (triggers / "once-1").exists()  # the actor did die on part 1
    assert summary.written == 300 and summary.parts == 3  # type: ignore[attr-defined]
    local = embed_dataset(corpus, tmp_path / "local", tiny_bert_bundle, rows_per_part=100, progress=False)
    assert local.written == 300
    np.testing.assert_array_equal(_vectors(tmp_path / "out"), _vectors(tmp_path / "local"))


def test_a_part_that_kills_its_actor_every_time_fails_the_job_and_the_rest_is_kept(
    triggers: Path, corpus: Path, tmp_path: Path, tiny_bert_bundle: Path
) -> None:
    always = triggers / "always-2"
    always.touch()
    try:
        # parts 0 and 1 may be done on the actor but not yet journaled by the driver: then they are named too
        with pytest.raises(ActorLostError, match=r"died 2 time\(s\), more than max_restarts=1 .* parts [0-9, -]+ "
                                                 r"of 0-2 not done") as caught:  # fmt: skip
            _job(corpus, tmp_path / "out", tiny_bert_bundle, max_restarts=1)
    finally:
        always.unlink()
    named = re.search(r"parts ([0-9, -]+) of 0-2 not done", str(caught.value)).group(1)  # type: ignore[union-attr]
    spans = [tuple(map(int, s.split("-"))) if "-" in s else (int(s), int(s)) for s in named.split(", ")]
    assert any(a <= 2 <= b for a, b in spans)  # the part that kills its actor is among them
    kept = int(re.search(r"The (\d+) part\(s\) this run finished are kept", str(caught.value)).group(1))  # type: ignore[union-attr]
    again = _job(corpus, tmp_path / "out", tiny_bert_bundle, max_restarts=1)
    assert again.parts_resumed == kept and again.written == 300  # type: ignore[attr-defined]


def test_max_restarts_is_checked(
    corpus: Path, tmp_path: Path, tiny_bert_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedrt.cli import main

    assert main(["embed-dataset", str(corpus), str(tmp_path / "out"), "--model", str(tiny_bert_bundle),
                 "--backend", "ray", "--max-actor-restarts", "-1", "--no-progress"]) != 0  # fmt: skip
    assert "max_restarts must be an integer >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written
