"""The training set's content fingerprint: equal content, equal hash; any change, a new one."""

import pyarrow as pa
import pytest

from portside.components.features.run import content_fingerprint


def _table() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1, 2, None, 4], pa.int64()),
            "amount": pa.array([1.5, None, 3.0, -0.25]),
            "country": pa.array(["DE", None, "FR", ""]),
            "flag": pa.array([True, False, None, True]),
            "at": pa.array([0, 10, 20, None], pa.timestamp("us", tz="UTC")),
            "tags": pa.array([[1], [], None, [2, 3]]),
        }
    )


def test_chunking_and_slicing_do_not_change_the_fingerprint():
    table = _table()
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert rechunked.column(0).num_chunks == 3
    padded = pa.concat_tables([_table(), table]).slice(4)  # non-zero offsets into buffers
    assert content_fingerprint(rechunked) == content_fingerprint(table)
    assert content_fingerprint(padded) == content_fingerprint(table)


def test_what_a_null_slot_holds_does_not_matter():
    values = pa.array([7, 8, 9], pa.int64())
    one = pa.Array.from_buffers(pa.int64(), 3, [pa.py_buffer(b"\x05"), values.buffers()[1]])
    other = pa.array([7, 0, 9], pa.int64())
    other = pa.Array.from_buffers(pa.int64(), 3, [pa.py_buffer(b"\x05"), other.buffers()[1]])
    assert one.to_pylist() == other.to_pylist() == [7, None, 9]
    assert content_fingerprint(pa.table({"x": one})) == content_fingerprint(pa.table({"x": other}))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.set_column(1, "amount", pa.array([1.5, None, 3.0, -0.5])),
        lambda t: t.set_column(1, "amount", pa.array([1.5, 0.0, 3.0, -0.25])),  # null -> 0
        lambda t: t.set_column(2, "country", pa.array(["DE", "", "FR", ""])),  # null -> ""
        lambda t: t.set_column(2, "country", pa.array(["D", "EF", "R", ""])),  # same bytes
        lambda t: t.set_column(3, "flag", pa.array([True, False, False, True])),
        lambda t: t.set_column(5, "tags", pa.array([[1], [], None, [3, 2]])),
        lambda t: t.take([1, 0, 2, 3]),  # row order
        lambda t: t.rename_columns(["user", *t.column_names[1:]]),  # schema
        lambda t: t.slice(0, 3),
    ],
)
def test_any_change_of_content_changes_the_fingerprint(change):
    table = _table()
    assert content_fingerprint(change(table)) != content_fingerprint(table)
