"""ids.py - the batch and task ids of test/mock_nimble.py's data sets.

Batch n (1-based) is b1000000-0000-4000-8000-{n:012x}; task k of batch n
(k = its 1-based position in the batch's task array, null entries counted)
is 7a000000-{n:04x}-4000-8000-{k:012x}.  The mock builds its data with
these, and every test that asks it for a batch or a task names it with
them, so the scheme lives here only.
"""
import re


def batch_id(n):
    return "b1000000-0000-4000-8000-%012x" % n


def task_id(n, k):
    return "7a000000-%04x-4000-8000-%012x" % (n, k)


def task_numbers(tid):
    """task_id(n, k) -> (n, k)."""
    return int(tid[9:13], 16), int(tid[-12:], 16)


# any batch or task id of the scheme, in a response body
ANY_ID = re.compile(rb"\b(?:b1000000-0000-4000-8000-[0-9a-f]{12}|"
                    rb"7a000000-[0-9a-f]{4}-4000-8000-[0-9a-f]{12})\b")
