"""Queued stream writes shared by the test client and the test service over mstls."""

from __future__ import annotations

from collections import deque

from mstls.core.stream_manager import StreamManager
from mstls.exceptions import Error

#: Per stream: chunks still to write, each with whether FIN follows it.
PendingWrites = dict[int, deque[tuple[memoryview, bool]]]


def flush_writes(streams: StreamManager, pending: PendingWrites) -> None:
    """Hand queued data to the stream layer as far as it takes it; drop finished queues."""
    for stream_id in list(pending):
        queue = pending[stream_id]
        while queue:
            data, end = queue[0]
            try:
                taken = streams.write(stream_id, data, fin=end) if data else 0
                if not data and end:
                    streams.write(stream_id, b"", fin=True)
            except Error:
                queue.clear()
                break
            if taken < len(data):
                queue[0] = (data[taken:], end)
                break
            queue.popleft()
        if not queue:
            del pending[stream_id]
