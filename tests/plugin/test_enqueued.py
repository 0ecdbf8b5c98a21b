"""enqueued_jobs: captured (or waiting) jobs, assertions, and the messages users see."""

from __future__ import annotations

import pytest


def test_capture_mode_assertions(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(
        test_capture="""
        import corequeue
        from appjobs import Add, Boom, calls

        def test_nothing_runs_and_arguments_match_by_name(enqueued_jobs):
            calls.clear()
            handle = Add(2, 3).run_in_worker(queue="math", priority=5)
            assert calls == []
            assert handle.state == "requested"
            found = enqueued_jobs.assert_enqueued(Add, 2, 3)
            assert found.id == handle.id
            enqueued_jobs.assert_enqueued(Add, a=2)
            enqueued_jobs.assert_enqueued(Add, 2, b=3, queue="math", priority=5)
            enqueued_jobs.assert_enqueued(Add)
            enqueued_jobs.refute_enqueued(Add, 2, 4)
            enqueued_jobs.refute_enqueued(Add, queue="default")
            enqueued_jobs.refute_enqueued(Boom)

        def test_all_and_enqueue_many(enqueued_jobs):
            corequeue.enqueue_many([Add(1, 1), Boom("x"), Add(2, 2, label="two")])
            assert [j.arguments for j in enqueued_jobs.all(Add)] == [
                {"a": 1, "b": 1},
                {"a": 2, "b": 2, "label": "two"},
            ]
            assert len(enqueued_jobs.all()) == 3
            assert enqueued_jobs.all(Boom)[0].build().message == "x"

        def test_unique_key_enqueues_once(enqueued_jobs):
            first = Add(1, 2).run_in_worker(unique_key="k")
            second = Add(1, 2).run_in_worker(unique_key="k")
            assert first.id == second.id
            assert (first.deduplicated, second.deduplicated) == (False, True)
            assert len(enqueued_jobs.all(Add)) == 1
            # As the database does: replace gives the waiting job the new arguments, raise
            # refuses (and leaves nothing of its batch).
            Add(5, 6).run_in_worker(unique_key="k", on_conflict="replace")
            assert [j.arguments for j in enqueued_jobs.all(Add)] == [{"a": 5, "b": 6}]
            for key in ("k", "fresh"):  # held before, or by the batch's first job
                try:
                    corequeue.enqueue_many(
                        [Add(0, 0), Add(7, 8)], unique_key=key, on_conflict="raise"
                    )
                except corequeue.DuplicateJob as exc:
                    assert (exc.job_id == first.id) == (key == "k")
                else:
                    raise AssertionError("no DuplicateJob")
            assert len(enqueued_jobs.all(Add)) == 1

        def test_expect_a_block(enqueued_jobs):
            Add(0, 0).run_in_worker()
            with enqueued_jobs.expect(Add, 7, 8):
                Add(7, 8).run_in_worker()

        def test_wait_on_a_captured_job_explains(enqueued_jobs):
            handle = Add(1, 2).run_in_worker()
            try:
                handle.wait(timeout=1)
            except AssertionError as exc:
                assert "never runs" in str(exc)
            else:
                raise AssertionError("wait() returned")

        def test_fails_assert_enqueued(enqueued_jobs):
            Add(1, 2).run_in_worker(queue="math")
            Boom("x").run_in_worker()
            enqueued_jobs.assert_enqueued(Add, 1, 3)

        def test_fails_assert_enqueued_when_nothing_is(enqueued_jobs):
            enqueued_jobs.assert_enqueued(Add, 1)

        def test_fails_refute_enqueued(enqueued_jobs):
            Add(5, 5).run_in_worker()
            enqueued_jobs.refute_enqueued(Add)

        def test_fails_expect(enqueued_jobs):
            Add(1, 1).run_in_worker()
            with enqueued_jobs.expect(Boom):
                Add(9, 9).run_in_worker()
        """
    )
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(passed=5, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_assert_enqueued _*",
            "E *AssertionError: expected appjobs.Add(1, 3) to be enqueued and waiting, but it is not.",  # noqa: E501
            "E *Enqueued and waiting (2):",
            "E *  appjobs.Add(1, 2) queue='math' priority=0 run_at=*",
            "E *  appjobs.Boom('x') queue='default' priority=0 run_at=*",
            "*_ test_fails_assert_enqueued_when_nothing_is _*",
            "E *Enqueued and waiting: nothing.",
            "*_ test_fails_refute_enqueued _*",
            "E *AssertionError: expected no appjobs.Add to be enqueued, but found 1:",
            "E *  appjobs.Add(5, 5) queue='default' *",
            "*_ test_fails_expect _*",
            "E *AssertionError: expected the block to enqueue appjobs.Boom, but it did not.",
            "E *The block enqueued (1):",
            "E *  appjobs.Add(9, 9) *",
        ]
    )


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_against_a_database_only_waiting_jobs_match(
    app_dir: pytest.Pytester, with_postgres: str, engine: str
) -> None:
    app_dir.makepyfile(
        test_db=f"""
        import pytest
        from appjobs import Add, Boom

        pytestmark = pytest.mark.corequeue_db("{engine}")

        def test_finished_jobs_do_not_match(enqueued_jobs, corequeue_worker):
            Add(1, 2).run_in_worker()
            Add(3, 4).run_in_worker(delay=3600)
            enqueued_jobs.assert_enqueued(Add, 1, 2)
            corequeue_worker.drain()
            enqueued_jobs.refute_enqueued(Add, 1, 2)
            later = enqueued_jobs.assert_enqueued(Add, 3, 4)
            assert later.run_at > later.run_at.now(later.run_at.tzinfo)
            assert enqueued_jobs.store.dialect == "{engine}"

        def test_message_lists_waiting_jobs_only(enqueued_jobs, corequeue_worker):
            Add(1, 2).run_in_worker()
            corequeue_worker.drain()
            Add(5, 6).run_in_worker(queue="later")
            enqueued_jobs.assert_enqueued(Add, 1, 2)
        """
    )
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *AssertionError: expected appjobs.Add(1, 2) to be enqueued and waiting, but it is not.",  # noqa: E501
            "E *Enqueued and waiting (1):",
            "E *  appjobs.Add(5, 6) queue='later' *",
        ]
    )
    result.stdout.no_fnmatch_line("E *  appjobs.Add(1, 2) *")
