"""A fit's thread count follows the cores other work leaves free (render3d.cpu_share)."""
import torch

from render3d.cpu_share import ThreadShare, other_busy_threads, runnable_threads


def _proc(tmp_path, runnable: int, own_states: str):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"1.50 1.20 0.90 {runnable}/321 4242\n")
    tasks = tmp_path / "task"
    for index, state in enumerate(own_states):
        (tasks / str(index)).mkdir(parents=True, exist_ok=True)
        (tasks / str(index) / "stat").write_text(f"{index} (python (worker)) {state} 1 2 3\n")
    return {"proc_loadavg": str(loadavg), "tasks": str(tasks)}


def test_other_work_is_the_machines_runnable_threads_less_this_processs(tmp_path):
    paths = _proc(tmp_path, runnable=5, own_states="RRS")  # a name with ") " inside is read right
    assert runnable_threads(**paths) == (5, 2)
    assert other_busy_threads(samples=2, interval=0.0, **paths) == 3
    assert other_busy_threads(proc_loadavg=str(tmp_path / "missing"), tasks=str(tmp_path)) is None


def test_threads_drop_while_other_work_runs_and_come_back_after():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        busy = iter([1, 0, 0])
        share = ThreadShare(every=5.0, cores=2, busy=lambda: next(busy))
        assert share.update(0.0) == 1  # another process keeps one core busy
        assert share.update(1.0) == 1  # not checked again before `every` seconds
        assert share.update(5.0) == 2 and share.changes == 2
        share.busy = lambda: None  # /proc unreadable: leave the count as it is
        assert share.update(10.0) == 2
        torch.set_num_threads(1)
        share.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_fit_on_the_cpu_restores_its_threads_and_reports_changes(toy_method, sphere_dataset):
    from render3d import Scene

    before = torch.get_num_threads()
    scene = Scene.fit(sphere_dataset, method="toy", steps=3, progress=False, share_cpu=True)
    assert torch.get_num_threads() == before
    assert scene.train_summary["machine"]["thread_changes"] >= 0
    assert scene.train_summary["machine"]["threads"] == before
