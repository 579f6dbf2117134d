"""The owner-side reference table and its counting notices, in memory (no processes)."""

from __future__ import annotations

from pydistributed._refs import RRID, FutureStore, RefTable


def test_a_delete_that_overtakes_its_add_still_balances() -> None:
    table = RefTable()
    rrid = RRID(2, 1)
    table.lookup(rrid)  # held by its creator, process 2
    table.apply([(rrid, 3, -1)])  # process 3 releases before its add arrived
    assert rrid in table.values
    table.apply([(rrid, 3, 1), (rrid, 2, -1)])
    assert rrid not in table.values


def test_store_is_dropped_only_when_every_count_is_zero() -> None:
    table = RefTable()
    rrid = RRID(1, 7)
    table.lookup(rrid).store.put("v")
    table.apply([(rrid, 4, 1), (rrid, 1, -1)])
    assert table.values[rrid].store.fetch() == "v"
    table.apply([(rrid, 4, -1)])
    assert rrid not in table.values


def test_notices_for_a_store_not_used_yet_create_it_for_its_creator() -> None:
    table = RefTable()
    rrid = RRID(5, 1)
    table.apply([(rrid, 6, 1)])
    assert table.values[rrid].clients == {5: 1, 6: 1}
    assert isinstance(table.values[rrid].store, FutureStore)


def test_flush_sends_adds_before_deletes_and_survives_a_gone_owner() -> None:
    table = RefTable()
    table.myid = lambda: 1
    sent: dict[int, list[tuple[RRID, int, int]]] = {}

    def send(owner: int, changes: list[tuple[RRID, int, int]]) -> None:
        if owner == 9:
            raise ValueError("no process with id 9")
        sent[owner] = changes

    table.send_changes = send
    table.release(2, RRID(2, 1), 1, 1)
    table.release(9, RRID(9, 1), 1, 1)
    table.add_holder(2, RRID(2, 1), 3)
    table.release(3, RRID(3, 4), 1, 2)
    table.flush()
    assert sent[2] == [(RRID(2, 1), 3, 1), (RRID(2, 1), 1, -1)]
    assert sent[3] == [(RRID(3, 4), 1, -2)]


def test_forgetting_a_process_drops_what_only_it_held() -> None:
    table = RefTable()
    only, shared = RRID(4, 1), RRID(4, 2)
    table.lookup(only)
    table.lookup(shared)
    table.apply([(shared, 5, 1)])
    table.forget_process(4)
    assert only not in table.values
    assert table.values[shared].clients == {5: 1}
