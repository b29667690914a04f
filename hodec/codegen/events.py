"""Bodies and tables of the generated event methods: event_times (the `at` times), event_conditions (the `when`
root functions) and event_assign (one event's assignments). The meaning of each event is lowered in
symbolic/events.py; the solver loop that calls these methods is hodec.solvers' (semantics: README, "The language").

Every method is present, also without events: event_times then returns a [0] tensor, event_conditions a [..., 0]
one, and event_assign raises IndexError for any index.
"""
from __future__ import annotations

from ..symbolic.lower import SymbolicModel
from .methods import Body, MethodWriter, _ordered as ordered


def event_tables(sm: SymbolicModel) -> dict:
    """events_table: (kind, statement, assigned states) per event in spec order; time_events: the event of each
    row of event_times(); state_events: the event of each column of event_conditions()."""
    return dict(
        events_table=tuple((e.kind, e.text, tuple(sm.state_names[j] for j in e.targets)) for e in sm.events),
        time_events=tuple(i for i, e in enumerate(sm.events) for _ in e.times),
        state_events=tuple(i for i, e in enumerate(sm.events) if e.kind == "when"),
    )


def event_times_body(sm: SymbolicModel, tables: dict) -> Body:
    """[K, *pbatch]: the times from the params (gradients flow to them), the rows in time_events' order."""
    times = [(e, k, time) for e in sm.events for k, time in enumerate(e.times)]
    if not times:
        return Body(["return self.parameter_values().new_zeros(0)  # no 'at' events"])
    w = MethodWriter(sm, tables, batch="pbatch", like="p", has_states=False)
    cols = w.columns([time for _, _, time in times], "event_time",
                     [f"line {e.line}, time {k + 1}" for e, k, _ in times])
    w.scope.gathered.add("param")  # p is read for its batch shape even where every time is a number
    return Body(w.prologue() + cols.lines + [f"return {ordered(cols, 'event_time', tables)}.movedim(-1, 0)"])


def event_conditions_body(sm: SymbolicModel, tables: dict) -> Body:
    """[..., E]: g(t, y) of each `when` event, positive where its condition holds (symbolic/events.py)."""
    whens = [e for e in sm.events if e.kind == "when"]
    w = MethodWriter(sm, tables, batch="batch", like="y", has_states=True)
    cols = w.columns([e.root for e in whens], "event_root", [f"line {e.line}" for e in whens])
    spec = [f"# line {e.line}: {e.text}" for e in whens]
    return Body(w.prologue() + spec + cols.lines + [f"return {ordered(cols, 'event_root', tables)}"], w.reads_time)


def event_assign_body(sm: SymbolicModel, tables: dict) -> Body:
    """y with event `index`'s assignments applied: the new values all computed from the y given (simultaneous
    assignments), then written into a copy of y (index_copy: differentiable in y and in the values)."""
    lines = []
    for i, event in enumerate(sm.events):
        w = MethodWriter(sm, tables, batch="batch", like="y", has_states=True)
        cols = w.columns(list(event.values), f"event{i}", [sm.state_names[j] for j in event.targets])
        tables[f"event{i}_targets"] = tuple(event.targets[k] for k in cols.order)  # column c sets that state
        body = w.prologue() + cols.lines + [f"return y.index_copy(-1, self.event{i}_targets, {cols.code})"]
        lines.append(f"if index == {i}:  # line {event.line}: {event.text}")
        lines += ["    " + line.replace("\n", "\n    ") for line in body]
    lines.append(f'raise IndexError(f"no event {{index}}: the model has {len(sm.events)} (events_table)")')
    return Body(lines)
