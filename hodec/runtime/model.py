"""The base class of every generated model: parameters, slots, tables, inputs, simulation, observation.

Generated modules subclass CompiledModel, fill in its tables and define initial_state, forward and observables.
"""
from __future__ import annotations

import contextlib
import math
from typing import Mapping, Optional

import torch
from torch import nn

from .. import solvers
from ..errors import HodecError, did_you_mean
from . import native as native_solving
from .coupling import strength
from .dosing import Doses
from .events import SimulationEvents
from .gates import Gated
from .neural import NeuralSlot, run_slots
from .signals import Signal, UnboundInputError, as_signal
from .stoichiometry import Stoichiometry
from .trainable import drop_empty_entries, register_trainable

PARAM_KINDS = ("free", "positive", "bounded", "fixed")
# A fixed-grid solve (torchdiffeq's euler, rk4, ... given a step_size) allocates its whole time grid before the first
# step: 10^8 steps are 0.8 GB of grid and hours of forward calls; a span/step_size beyond is refused up front.
MAX_FIXED_STEPS = 10 ** 8


class CompiledModel(Gated, Stoichiometry, nn.Module):
    state_names: tuple = ()
    param_names: tuple = ()
    input_names: tuple = ()
    observable_names: tuple = ()
    parameters_table: tuple = ()
    slots_table: tuple = ()
    observables_use_time: bool = True
    forward_uses_time: bool = True
    observation_table: tuple = ()  # (name, states it depends on, state it equals or None, neural slots it calls)
    initial_table: tuple = ()  # (state, params its initial value reads)
    # the spec's events (see runtime/events.py): (kind, statement, assigned states) each; the event of each row of
    # event_times() and of each column of event_conditions()
    events_table: tuple = ()
    compartments_table: tuple = ()  # (state, the param or let giving its compartment's size)
    time_events: tuple = ()
    state_events: tuple = ()
    _coupling = None  # an active runtime.Coupling, read by the generated forward (see set_coupling)
    _member_values = None  # a parameter table [*batch, P] every method reads instead (see member_values)
    index_tables: dict = {}
    constant_tables: dict = {}

    def __init__(self, values: Optional[Mapping[str, float]] = None, /, *,
                 slots: Optional[Mapping[str, nn.Module]] = None, **overrides):
        super().__init__()
        self._init_parameters()
        self._init_slots(dict(slots or {}))
        self._init_gates()
        self._init_tables(torch.get_default_dtype(), None)
        self._signals: dict = {}
        self._exact: dict = {row[0]: row[1] for row in self.parameters_table}
        self.set_params({**dict(values or {}), **overrides})

    # ---------------------------------------------------------------- parameters
    def _init_parameters(self):
        by_kind = {k: [row for row in self.parameters_table if row[2] == k] for k in PARAM_KINDS}
        self._param_slices = {}
        start = 0
        for kind in PARAM_KINDS:
            self._param_slices[kind] = (start, start + len(by_kind[kind]))
            start += len(by_kind[kind])
        self._param_rows = {row[0]: row for row in self.parameters_table}
        self._param_index = {row[0]: i for i, row in enumerate(self.parameters_table)}
        for kind in ("free", "positive", "bounded"):
            register_trainable(self, f"raw_{kind}", torch.zeros(len(by_kind[kind])))
        self.register_buffer("fixed_values", torch.zeros(len(by_kind["fixed"])))
        self._pieces = [k for k in PARAM_KINDS if by_kind[k]]
        # Every param free (mass-action networks, typically): p is raw_free itself, with no per-call work.
        self._free_only = self._pieces in (["free"], [])
        # Per-sample params (see set_params): their exact values, and the batch shape they broadcast to.
        self._exact_batch: dict = {}
        self._param_batch: tuple = ()
        self._batch_plan: dict = {}  # kind -> runs (source vector, start, stop, per-sample) of its trained coordinates
        for name in ("batch_raw", "batch_fixed"):
            self.register_buffer(name, None, persistent=False)

    def parameter_values(self) -> torch.Tensor:
        """All parameters as one vector p in the order of parameters_table, constraints applied: [P], or
        [*batch, P] when some are per-sample (the shared ones expanded); inside `member_values(table)`, the table."""
        if self._member_values is not None:
            return self._member_values
        if self._batch_plan:
            pieces = [self._batched_kind(kind, runs) for kind, runs in self._batch_plan.items()]
        elif self._free_only:
            return self.raw_free
        else:
            pieces = [self._shared_kind(kind) for kind in self._pieces]
        if len(pieces) == 1:
            return pieces[0]
        return torch.cat(pieces, -1) if pieces else self.raw_free

    def _shared_kind(self, kind: str) -> torch.Tensor:
        return _constrain(kind, getattr(self, _STORED[kind]), self)

    def _batched_kind(self, kind: str, runs: list) -> torch.Tensor:
        """The params of one kind, [*batch, n], assembled from runs of their trained coordinates."""
        if not any(per_sample for *_, per_sample in runs):
            values = self._shared_kind(kind)
            return values.expand(*self._param_batch, values.shape[-1])
        parts = [getattr(self, source)[..., start:stop] if per_sample else
                 getattr(self, source)[start:stop].expand(*self._param_batch, stop - start)
                 for source, start, stop, per_sample in runs]
        # Contiguous before the constraint: exp or sigmoid over a strided slice is ~10x slower.
        raw = torch.cat(parts, -1) if len(parts) > 1 else parts[0].contiguous()
        return _constrain(kind, raw, self)

    def params(self) -> dict:
        """Current (constrained) value of every param, in declaration order: a float, or for a per-sample one a
        tensor of the params' batch shape."""
        p = self.parameter_values().detach()
        values = {name: p[..., self._param_index[name]] for name in self.param_names}
        return {name: v.clone() if name in self._exact_batch else float(v.reshape(-1)[0])  # shared: all equal
                for name, v in values.items()}

    @contextlib.contextmanager
    def member_values(self, table: Optional[torch.Tensor]):
        """`with model.member_values(table): ...` every method (forward, initial_state, observables, jacobian,
        simulate) reads the constrained parameter vector `table` [B, P] (columns in parameters_table order)
        instead of the model's own params, for the block only: per-member values that are functions of other
        params (experimental conditions: gradients flow to whatever the table was computed from). None: the
        model's own params. Not for simulate(adjoint=True), which differentiates the model's own tensors."""
        previous = self._member_values
        self._member_values = table
        try:
            yield self
        finally:
            self._member_values = previous

    def param_batch_shape(self) -> tuple:
        """The batch shape of the per-sample params (() when every param is shared)."""
        return self._param_batch

    def set_params(self, values: Mapping):
        """Set params by name (any kind, fixed ones included) to constrained values. A value with batch dimensions
        (a tensor, array or list of shape [B] or [*batch]) makes the param per-sample: each batch member of a
        state [*batch, n] then reads its own value, a trainable one through the nn.Parameter `batch_raw` (in the
        unconstrained coordinates of its kind, as raw_free/raw_positive/raw_bounded), a fixed one through the
        buffer `batch_fixed`. A plain number makes it shared again. Set them before creating an optimizer: a new
        batch shape registers a new batch_raw."""
        for name, value in values.items():
            if name not in self._param_rows:
                raise _unknown(self, "param", name, self.param_names)
            tensor = torch.as_tensor(value.detach() if torch.is_tensor(value) else value, dtype=torch.float64)
            if tensor.dim() == 0:
                self._exact[name] = float(tensor)
                self._exact_batch.pop(name, None)
            else:
                self._exact_batch[name] = tensor.cpu()
        for name, value in self._exact.items():
            self._set_param(name, value)
        self._set_batch_params()
        self._exact_versions = self._raw_versions()

    def set_params_table(self, table, names=None):
        """Per-sample values of several params at once: `table` [*batch, len(names)], column j holding param
        names[j] (default: every param, in param_names order). Same as set_params with one column per name."""
        names = list(self.param_names if names is None else names)
        table = torch.as_tensor(table.detach() if torch.is_tensor(table) else table, dtype=torch.float64)
        if table.dim() < 2 or table.shape[-1] != len(names):
            raise HodecError(f"set_params_table: the table has shape {tuple(table.shape)}; expected "
                             f"[*batch, {len(names)}], one column per param of {names}")
        self.set_params({name: table[..., j] for j, name in enumerate(names)})

    def _raw_versions(self) -> tuple:
        tensors = (self.raw_free, self.raw_positive, self.raw_bounded, self.fixed_values, self.batch_raw,
                   self.batch_fixed)
        return tuple(t._version for t in tensors if t is not None)

    @torch.no_grad()
    def _set_batch_params(self):
        """(Re)build batch_raw, batch_fixed and their column tables from the exact per-sample values."""
        rows = sorted((self._param_rows[name] for name in self._exact_batch),
                      key=lambda row: (PARAM_KINDS.index(row[2]), self._param_index[row[0]]))
        shapes = {row[0]: tuple(self._exact_batch[row[0]].shape) for row in rows}
        try:
            self._param_batch = tuple(torch.broadcast_shapes(*shapes.values()))
        except RuntimeError:
            raise HodecError("per-sample params have batch shapes that do not broadcast: " +
                             ", ".join(f"'{n}' {list(s)}" for n, s in shapes.items())) from None
        raw = [_unconstrain(row, self._exact_batch[row[0]]).expand(self._param_batch) for row in rows]
        trainable = [r for row, r in zip(rows, raw) if row[2] != "fixed"]
        fixed = [r for row, r in zip(rows, raw) if row[2] == "fixed"]
        self._put("batch_raw", torch.stack(trainable, -1) if trainable else None, parameter=True)
        self._put("batch_fixed", torch.stack(fixed, -1) if fixed else None, parameter=False)
        self._batch_plan = self._plan_batched_kinds() if rows else {}

    def _plan_batched_kinds(self) -> dict:
        """Per kind, where each of its params' trained coordinates comes from, as runs of consecutive columns of
        one vector (a shared raw_* or the per-sample batch_raw / batch_fixed)."""
        counters: dict = {}
        plan: dict = {kind: [] for kind in self._pieces}
        for name, _, kind, _, _ in self.parameters_table:
            if name in self._exact_batch:
                source = "batch_fixed" if kind == "fixed" else "batch_raw"
                column = counters[source] = counters.get(source, -1) + 1
            else:
                source = "fixed_values" if kind == "fixed" else f"raw_{kind}"
                column = self._param_index[name] - self._param_slices[kind][0]
            runs = plan[kind]
            if runs and runs[-1][0] == source and runs[-1][2] == column:
                runs[-1][2] += 1
            else:
                runs.append([source, column, column + 1, source.startswith("batch_")])
        return plan

    def _put(self, name: str, values, parameter: bool):
        """Write values into the existing tensor when the shape is unchanged (an optimizer keeps holding it)."""
        current = getattr(self, name)
        if values is None or current is None or current.shape != values.shape:
            if values is not None:
                values = values.to(dtype=self.raw_free.dtype, device=self.raw_free.device)
            if parameter and values is not None:
                self._buffers.pop(name, None)
                setattr(self, name, nn.Parameter(values))
            else:
                self._parameters.pop(name, None)
                self.register_buffer(name, values, persistent=values is not None)
        else:
            current.copy_(values)

    def state_batch(self, batch) -> tuple:
        """The batch shape of an initial state asked for with `batch`, broadcast with the per-sample params'."""
        if not self._param_batch:
            return tuple(batch)
        try:
            return tuple(torch.broadcast_shapes(tuple(batch), self._param_batch))
        except RuntimeError:
            raise HodecError(f"a state batch {list(batch)} does not broadcast with the per-sample params' batch "
                             f"shape {list(self._param_batch)} ({', '.join(self._exact_batch)})") from None

    def _apply(self, fn, recurse=True):
        # Parameters and tables are defined in float64 arithmetic; a conversion (e.g. .double()) recomputes them
        # from their exact values instead of widening float32 roundings, unless training has changed them since.
        untouched = self._raw_versions() == self._exact_versions
        super()._apply(fn, recurse)
        self._init_tables(self.raw_free.dtype, self.raw_free.device)
        if untouched:
            self.set_params({})
        return self

    @torch.no_grad()
    def _set_param(self, name: str, value: float):
        _, _, kind, lower, upper = self._param_rows[name]
        start, _ = self._param_slices[kind]
        i = self._param_index[name] - start
        if kind == "positive":
            if not value > 0:
                raise HodecError(f"param '{name}' is positive; cannot set it to {value}")
            self.raw_positive[i] = math.log(value)
        elif kind == "bounded":
            if not lower < value < upper:
                raise HodecError(f"param '{name}' must lie strictly inside ({lower}, {upper}); got {value}")
            x = (value - lower) / (upper - lower)
            self.raw_bounded[i] = math.log(x) - math.log1p(-x)
        elif kind == "free":
            self.raw_free[i] = value
        else:
            self.fixed_values[i] = value

    def set_trained(self, name: str, value: float):
        """Write one shared param's constrained value into its trained coordinates, every other param left as it is
        (set_params re-applies every exact value, trained ones' included): for a fit that trains it elsewhere."""
        if name not in self._param_rows:
            raise _unknown(self, "param", name, self.param_names)
        self._set_param(name, float(value))

    def raw_parameters(self) -> torch.Tensor:
        """The trainable mechanistic parameters in their unconstrained coordinates (free, log, logit)."""
        return torch.cat([self.raw_free, self.raw_positive, self.raw_bounded])

    def mechanistic_parameters(self) -> list:
        """The raw parameter vectors, an empty one (a kind no param has; not an nn.Parameter) included."""
        return [self.raw_free, self.raw_positive, self.raw_bounded]

    def _load_from_state_dict(self, state_dict, prefix, *args):
        drop_empty_entries(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ---------------------------------------------------------------- slots and tables
    def _init_slots(self, replacements: dict):
        names = [row[0] for row in self.slots_table]
        for name in replacements:
            if name not in names:
                raise _unknown(self, "neural slot", name, names)
        self.slot_modules = nn.ModuleList(
            NeuralSlot(len(args), 1 if outputs is None else len(outputs), hidden, activation, positive,
                       net=replacements.get(name))
            for name, args, outputs, hidden, activation, positive in self.slots_table)

    def run_slots(self, indices: tuple, x: torch.Tensor) -> list:
        """Slots of one shape evaluated together (generated forward code calls this; see neural.run_slots)."""
        plans = self.__dict__.setdefault("_fused_slots", {})  # a plain attribute: not in the state_dict
        slots = [self.slot_modules[i] for i in indices]
        out, plans[indices] = run_slots(slots, x, plans.get(indices))
        return out

    def slot_jacobian(self, index: int, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """d slot(x * scale) / dx of one neural slot at its stacked arguments x [..., n_in] (scale: the gates of
        its arguments), flattened to [..., n_out * n_in] (output k, argument a at k * n_in + a). The generated
        jacobian() reads it."""
        slot = self.slot_modules[index]
        z = x if scale is None else x * scale
        J = _mlp_jacobian(slot, z) if slot.is_factory_mlp else _jvp_jacobian(slot, z)
        return (J if scale is None else J * scale.unsqueeze(-2)).flatten(-2)

    def slot(self, name: str) -> NeuralSlot:
        return self.slot_modules[[row[0] for row in self.slots_table].index(name)]

    def _init_tables(self, dtype, device):
        """Buffers from the class tables: index lists, constants, bounds and the stoichiometry."""
        def constant(values, kind=torch.float64):
            return torch.as_tensor(values, dtype=kind).to(dtype=dtype if kind == torch.float64 else kind,
                                                            device=device)

        for name, values in self.index_tables.items():
            self.register_buffer(name, constant(values, torch.long), persistent=False)
        for name, values in self.constant_tables.items():
            self.register_buffer(name, constant(values), persistent=False)
        bounded = [row for row in self.parameters_table if row[2] == "bounded"]
        self.register_buffer("bound_lower", constant([r[3] for r in bounded]), persistent=False)
        self.register_buffer("bound_width", constant([r[4] - r[3] for r in bounded]), persistent=False)
        self._init_stoichiometry(constant)

    # ---------------------------------------------------------------- inputs
    def set_inputs(self, signals: Mapping):
        """Bind input signals by name: (times, values[, method]), a runtime.Signal, or a callable t -> value."""
        for name, spec in signals.items():
            if name not in self.input_names:
                raise _unknown(self, "input", name, self.input_names)
            self._signals[name] = as_signal(spec)

    def input_values(self, t: torch.Tensor, batch) -> torch.Tensor:
        """Every input at time t, [*batch, n_inputs]. t is a scalar or broadcasts to the batch shape: one time per
        batch member ([*batch], as the stiff solvers pass it) or per leading index ([T, 1, ...] inside observe())."""
        columns = []
        for name in self.input_names:
            if name not in self._signals:
                raise UnboundInputError([n for n in self.input_names if n not in self._signals])
            columns.append(_signal_at(self._signals[name], t, tuple(batch)))
        return torch.stack(columns, -1)

    # ---------------------------------------------------------------- synchronisation coupling
    def set_coupling(self, coupling=None, lam: float = 1.0):
        """Attach a runtime.Coupling at strength lam: forward then adds -lam k J+ (h(y) - yhat(t)). None, or
        lam == 0, gives the plain vector field exactly (the generated forward tests one attribute)."""
        if coupling is not None:
            coupling.lam = strength(lam)
        self._coupling = coupling if coupling is not None and lam != 0 else None

    @contextlib.contextmanager
    def coupled(self, coupling, lam: float = 1.0):
        """`with model.coupled(c, lam): ...` attaches a coupling for the block only."""
        previous = self._coupling
        self.set_coupling(coupling, lam)
        try:
            yield self
        finally:
            self._coupling = previous

    # ---------------------------------------------------------------- simulation and observation
    def simulate(self, ts, y0=None, inputs=None, method: str = "auto", rtol: float = 1e-6,
                 atol: float = 1e-8, doses: Optional[Doses] = None, after_events: bool = False,
                 native: Optional[bool] = None, **options) -> torch.Tensor:
        """Integrate from ts[0]; returns [T, *batch, n]. ts is [T], or [T, *batch]: each member its own times.

        method: hodec's own solvers ('auto', the default: tsit5, switching to the stiff rodas5p when the problem
        turns out stiff; 'tsit5', 'dopri5', 'rodas5p', ...: see hodec.solvers.METHODS), options max_steps and
        compile, adjoint (gradients by hodec.solvers.solve_adjoint: memory independent of the steps), stats; or
        any other torchdiffeq method (euler, rk4, implicit_adams, ...), options passed to torchdiffeq.
        doses: a runtime.Doses (bolus and infusion doses, each member its own regimen); they and the spec's events
        (`at`, `when`) need one of hodec's own methods, without adjoint. after_events: y0 is the state after the
        events at ts[0] already (a segment continuing another): they do not apply again, and infusions running
        then keep running.
        native: solve with the model and hodec's solver loops compiled to C (runtime/native.py; options max_steps
        and stats): None (default) does when no gradient is needed (grad mode off, or nothing the solve reads
        requires grad) or only the params and y0 need one (a model without neural slots, tsit5/dopri5/auto, no
        compile: forward sensitivities), no coupling, events or doses apply, the inputs are sample tables, the
        method is a native one and a C compiler works, unless HODEC_NATIVE=0 is set; True: natively, else a
        HodecError saying why not; False: the torch solvers. Native solves run in double precision (a float32
        model's result is rounded to float32) and fill stats with steps, rejected, switched (members `auto` moved
        to rodas5p), n_f and n_jac summed over the members."""
        if inputs:
            self.set_inputs(inputs)
        ref = self.raw_free
        ts = torch.as_tensor(ts, dtype=ref.dtype, device=ref.device)
        y0 = self.initial_state() if y0 is None else torch.as_tensor(y0, dtype=ref.dtype, device=ref.device)
        y0 = y0.expand(*self.state_batch(y0.shape[:-1]), y0.shape[-1])  # per-sample params: one state each
        if native_solving.chosen(self, native, ts, y0, method, atol, options, doses):
            ys = native_solving.simulate(self, ts, y0, method, rtol, atol, options, required=bool(native))
            if ys is not None:  # (None: a gradient solve `auto` found stiff, for the torch solvers' stiff method)
                return ys
        if doses is not None or self.events_table:
            return self._simulate_events(ts, y0, doses, method, rtol, atol, options, after_events)
        if method in solvers.NAMES:
            # an attached coupling reads its reference yhat(t): the field is not autonomous then (Rosenbrock steps
            # need its time derivative)
            common = dict(jacobian=self._solver_jacobian(), state_names=self.state_names,
                          autonomous=not self.forward_uses_time and self._coupling is None)
            if options.pop("adjoint", False):
                return solvers.solve_adjoint(self, y0, ts, method=method, rtol=rtol, atol=atol,
                                             **self._adjoint_params(y0.shape[:-1]), **common, **options)
            return solvers.solve(self, y0, ts, method, rtol, atol, **common, **options)
        return self._torchdiffeq(ts, y0, method, rtol, atol, options)

    def _simulate_events(self, ts, y0, doses, method: str, rtol: float, atol, options: dict,
                         after_events: bool = False) -> torch.Tensor:
        """simulate() with the spec's events and doses: hodec's own solvers over the state the events extend."""
        what = "doses" if doses is not None else f"events ({self.events_table[0][1]})"
        if method not in solvers.NAMES:
            raise HodecError(f"{what} need one of hodec's own solver methods ({', '.join(solvers.NAMES)}); "
                             f"'{method}' is not one")
        if options.pop("adjoint", False):
            raise HodecError(f"{what} cannot be solved with adjoint=True: the adjoint sweeps do not cross jumps "
                             f"(gradients come by backpropagation without it)")
        system = SimulationEvents(self, doses, tuple(y0.shape[:-1]), y0, ts[0] if after_events else None)
        ys = solvers.solve(system.rhs(), system.initial(y0), ts, method, rtol, system.atol(atol),
                           jacobian=system.jacobian(self._solver_jacobian()), state_names=system.state_names(),
                           autonomous=not self.forward_uses_time and self._coupling is None,
                           events=system.events(), **options)
        return system.visible(ys)

    def _adjoint_params(self, batch) -> dict:
        """The tensors the adjoint differentiates: every trainable one; the per-sample batch_raw as member_params
        (one row per member: one cheap product for all) when its batch is the state's."""
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        per_member = [p for name, p in trainable if name == "batch_raw" and tuple(p.shape[:-1]) == tuple(batch)]
        return dict(params=[p for _, p in trainable if not any(p is q for q in per_member)], member_params=per_member)

    def _solver_jacobian(self):
        """The symbolic Jacobian for the stiff methods, where the generated class has one."""
        return getattr(self, "jacobian", None)

    def _torchdiffeq(self, ts, y0, method: str, rtol: float, atol: float, options: dict,
                     field=None) -> torch.Tensor:
        """A torchdiffeq solve of the model's field (or `field`); per-member times ts [T, *batch] are solved on the
        union of the members' grids relative to their starts, each member's field at its own start + tau."""
        from torchdiffeq import odeint
        from torchdiffeq._impl.odeint import SOLVERS

        if method not in SOLVERS:
            known = [*solvers.NAMES, *sorted(m for m in SOLVERS if m not in solvers.NAMES)]
            hint = did_you_mean(method, known)
            raise HodecError(f"unknown ODE solver method '{method}'" + (f"; {hint}" if hint else "") +
                             f" (methods: {', '.join(known)})")

        if ts.dim() > 1:  # each member its own times: one solve in time since each member's start
            start = ts[0]
            grid, picks = torch.unique(ts - start, sorted=True, return_inverse=True)
            ys = self._torchdiffeq(grid, y0, method, rtol, atol, options, lambda tau, y: self(start + tau, y))
            return ys.gather(0, picks.unsqueeze(-1).expand(*picks.shape, ys.shape[-1]))
        if options.get("step_size") is not None:
            _check_fixed_grid(ts, options["step_size"], method)
        try:
            return odeint(field or self, y0, ts, method=method, rtol=rtol, atol=atol, options=options or None)
        except AssertionError as err:  # torchdiffeq reports step-size underflow this way
            raise HodecError(f"the ODE solver failed ({method}): {err}; the model may be stiff or diverging "
                             f"(try method='auto', other rtol/atol, or other params)") from None

    def observe(self, ys: torch.Tensor, ts=None) -> torch.Tensor:
        """Observables of a trajectory ys [T, *batch, n] at times ts [T] (or of states [*batch, n] at scalar ts)."""
        if ts is None:
            if self.observables_use_time:
                raise HodecError("these observables depend on t or inputs: pass ts to observe()")
            ts = 0.0
        t = torch.as_tensor(ts, dtype=ys.dtype, device=ys.device)
        if t.dim() == 1:
            t = t.reshape(t.shape[0], *([1] * (ys.dim() - 2)))
        return self.observables(t, ys)

    def extra_repr(self) -> str:
        return f"states={len(self.state_names)}, params={len(self.param_names)}, fluxes={len(self.fluxes_table)}"


_STORED = {"free": "raw_free", "positive": "raw_positive", "bounded": "raw_bounded", "fixed": "fixed_values"}


def _constrain(kind: str, raw: torch.Tensor, model) -> torch.Tensor:
    """Params of one kind from their trained coordinates (fixed ones and free ones as they are). The bounds are
    read only for bounded params: each module attribute read costs ~0.4 µs, on every forward."""
    if kind == "positive":
        return torch.exp(raw)
    if kind == "bounded":
        return model.bound_lower + model.bound_width * torch.sigmoid(raw)
    return raw


def _unconstrain(row: tuple, values: torch.Tensor) -> torch.Tensor:
    """The trained coordinates of a per-sample param's values (float64), checked against its kind."""
    name, _, kind, lower, upper = row
    if kind == "positive":
        if not bool((values > 0).all()):
            raise HodecError(f"param '{name}' is positive; per-sample values {_first_bad(values > 0, values)}")
        return torch.log(values)
    if kind == "bounded":
        inside = (values > lower) & (values < upper)
        if not bool(inside.all()):
            raise HodecError(f"param '{name}' must lie strictly inside ({lower}, {upper}); per-sample values "
                             f"{_first_bad(inside, values)}")
        x = (values - lower) / (upper - lower)
        return torch.log(x) - torch.log1p(-x)
    return values


def _first_bad(ok: torch.Tensor, values: torch.Tensor) -> str:
    index = tuple(int(i) for i in (~ok).nonzero()[0])
    return f"hold {float(values[index])} at batch index {list(index)}"


def _mlp_jacobian(slot: NeuralSlot, x: torch.Tensor) -> torch.Tensor:
    """d slot(x)/dx [..., n_out, n_in] of a slot's own MLP, layer by layer: J <- W J through a linear layer,
    J <- act'(z) J through an activation (elementwise, see neural.ACTIVATIONS: its slope is one JVP with a tangent
    of ones). About 3x cheaper than _jvp_jacobian for a small slot at batch 1, 1.7x at 1024 (measured)."""
    h, J = x, None
    for layer in slot.net:
        if isinstance(layer, nn.Linear):
            h = layer(h)
            J = layer.weight.expand(*x.shape[:-1], *layer.weight.shape) if J is None else layer.weight @ J
        else:
            h, slope = torch.func.jvp(layer, (h,), (torch.ones_like(h),))
            J = slope.unsqueeze(-1) * J
    return torch.sigmoid(h).unsqueeze(-1) * J if slot.positive else J  # softplus' = sigmoid


def _jvp_jacobian(module, x: torch.Tensor) -> torch.Tensor:
    """d module(x)/dx [..., n_out, n_in] of any network, by forward-mode autodiff in one JVP: the batch repeated
    once per argument a, with the tangent e_a (cheaper than vmap over the tangents, whose per-call overhead
    dominates small networks)."""
    n = x.shape[-1]
    basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *([1] * (x.dim() - 1)), n)
    primal, tangent = x.expand(n, *x.shape).contiguous(), basis.expand(n, *x.shape).contiguous()
    return torch.func.jvp(module, (primal,), (tangent,))[1].movedim(0, -1)


def _signal_at(signal, t: torch.Tensor, batch: tuple) -> torch.Tensor:
    """One signal at times t, broadcast to [*batch]. A signal's own trailing shape (a column per member, as hodec
    fit binds a group's inputs: values [T, B]) lines up with the batch's last axes."""
    def read(times):
        return torch.as_tensor(signal(times), dtype=t.dtype, device=t.device)

    if t.dim() == 0:
        return read(t).expand(batch)
    shape = (1,) * (len(batch) - t.dim()) + tuple(t.shape)
    if isinstance(signal, Signal) and any(size != 1 for size in shape[len(batch) - (signal.values.dim() - 1):]):
        return signal.each(t.expand(batch))  # each member at its own time reads its own column, directly (not
        # every column at every member's time first: O(B²) for B forecast windows)
    value = read(t.reshape(-1))  # [K, *columns]
    lead = len(batch) - (value.dim() - 1)  # the batch axes before the columns'
    if all(size == 1 for size in shape[lead:]):  # t varies only along axes the columns do not span
        return value.reshape(*shape[:lead], *value.shape[1:]).expand(batch)
    # A user's callable: the signal at every member's time, then the diagonal (O(B²) reads).
    value = read(t.expand(batch).reshape(-1))
    rows, width = value.shape[0], math.prod(batch[lead:])
    flat = value.expand(rows, *batch[lead:]).reshape(rows, width)
    own = torch.arange(rows, device=t.device) % width  # row-major: a member's column index is its flat index mod width
    return flat.gather(1, own.unsqueeze(1)).reshape(batch)


def _check_fixed_grid(ts: torch.Tensor, step_size, method: str):
    step = float(step_size)
    if not (step > 0 and math.isfinite(step)):
        raise HodecError(f"step_size must be a positive number; got {step_size}")
    span = float(ts[-1] - ts[0]) if ts.numel() else 0.0
    steps = abs(span) / step
    if not steps <= MAX_FIXED_STEPS:  # also refuses an infinite or NaN span
        raise HodecError(f"{method} with step_size {step:g} over a time span of {span:g} would take {steps:.3g} "
                         f"steps (at most {MAX_FIXED_STEPS:.0e}): use a larger step_size or an adaptive method "
                         f"such as dopri5")


def _unknown(model, what: str, name: str, candidates) -> HodecError:
    hint = did_you_mean(name, candidates)
    return HodecError(f"{type(model).__name__} has no {what} '{name}'" + (f"; {hint}" if hint else ""))
