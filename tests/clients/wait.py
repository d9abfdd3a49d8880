"""What both Airflow client scripts share: waiting for a run's state."""

import time


def wait_for(runs, dag_id, run_id, states, seconds=120):
    """The run once its state is one of `states` (`runs` is the client's
    DAG run API: `get_dag_run(dag_id, run_id)`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = runs.get_dag_run(dag_id, run_id)
        if run.state.value in states:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} is still {run.state.value} after {seconds}s")
