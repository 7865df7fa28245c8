"""Scheduled runs (issue 27): one Temporal Schedule per ``sch_…`` (same id), whose action
starts ``ScheduleFireWorkflow``; a fire creates its run through the run service
(``runyard.runs``) from an activity and waits for it as a child workflow, so the
schedule's overlap policy governs the agent run itself. A fire that cannot start is
recorded as skipped, with its reason, and announced (``schedule.skipped``)."""
