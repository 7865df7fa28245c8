"""A typed Python client of the Runyard HTTP API (sync ``Runyard``, async ``AsyncRunyard``).

::

    from runyard.client import Runyard

    with Runyard() as ry:                      # RUNYARD_API_URL, RUNYARD_API_KEY
        run = ry.create("#!scripted\\n{\\"text\\": \\"hi\\"}", model="scripted", start=True)
        for event in ry.events(run.id):        # resumes with Last-Event-ID on a cut
            print(event.seq, event.type)
        print(ry.get(run.id).text)

Every failure raises ``RunyardAPIError``; its ``problem`` is the API's RFC 9457 document.
"""

from runyard.client._async import AsyncRunyard
from runyard.client._core import DEFAULT_API_URL
from runyard.client._sync import Runyard
from runyard.client.models import (
    Approval,
    ApprovalPage,
    Event,
    ExecAccepted,
    Output,
    Problem,
    Run,
    RunPage,
    RunStatusInfo,
    RunyardAPIError,
    Usage,
)
from runyard.client.schedules import Schedule, ScheduleFire, SchedulePage, ScheduleTriggered

__all__ = [
    "DEFAULT_API_URL",
    "Approval",
    "ApprovalPage",
    "AsyncRunyard",
    "Event",
    "ExecAccepted",
    "Output",
    "Problem",
    "Run",
    "RunPage",
    "RunStatusInfo",
    "Runyard",
    "RunyardAPIError",
    "Schedule",
    "ScheduleFire",
    "SchedulePage",
    "ScheduleTriggered",
    "Usage",
]
