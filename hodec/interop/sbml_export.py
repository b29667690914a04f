"""A compiled .hode model as SBML Level 3 Version 2 (written with python-libsbml): what `hodec import` reads back
into a model with the same vector field.

What maps to what (the README's `hodec export` section): a param → a constant <parameter> (not constant where an
event assigns it; a compartment size → a <compartment>); a state → a <species>, an amount (hasOnlySubstanceUnits)
in the compartment `default_compartment` of size 1, or a concentration in the compartment of its `in V`; an
initial value → the species' initial amount or concentration, an <initialAssignment> where it is not a number; a
let → the <assignmentRule> of a non-constant parameter; a reaction → a <reaction> with its rate as kinetic law;
the `der` terms of a state in no reaction → a <rateRule>, of a state that reactions change → one reaction
`der_<state>_<k>` per term (the state its product; rate = term × size for a concentration, since a reaction
moves amounts); an `at t = T1, T2` event → one <event> per time, trigger `time >= T`; a `when` → an <event> with
its condition as trigger (all persistent, values read at the trigger; initialValue false for a time, so that one
at the start fires there, true for a `when`, which does not fire where it holds at the start); a function → a
<functionDefinition> (the params its body reads appended to its arguments: SBML functions read nothing else); an
observable → the assignment rule of a parameter of its name (its noise model is PEtab's measurement model, not
SBML's). Neural slots and inputs have no SBML form and are refused with a HodecError naming the statement.
Numbers are written as libsbml writes doubles, to 15 significant digits.

For a PEtab problem (`Exporter(model, petab=True)`, hodec.interop.petab_export) the model is the same but for three
things: each residual slot output (slot, state) is a constant <parameter> of value 0 added to the state's rate
(to its rate rule, or as a reaction `neural_<slot>_<state>` making the state, for a state that reactions change),
which PEtab-SciML's hybridization table sets to the network's output; an observable's rule sets the parameter
`observable_<name>`, since PEtab's observable ids must not be ids of the model; and a compartment whose size is a
param is `compartment_<param>`, its initial assignment the param (PEtab's parameter table lists parameters)."""
from __future__ import annotations

import functools
from typing import Optional

import libsbml

from ..errors import Diagnostic, HodecError
from ..model.model import TIME, Model
from ..syntax import ast

LEVEL, VERSION = 3, 2
DEFAULT_COMPARTMENT = "default_compartment"
# .hode functions with a MathML element of their own (same definition; hodec.interop.mathml reads them back).
ELEMENTS = {
    "exp": libsbml.AST_FUNCTION_EXP, "log": libsbml.AST_FUNCTION_LN, "abs": libsbml.AST_FUNCTION_ABS,
    "floor": libsbml.AST_FUNCTION_FLOOR, "ceil": libsbml.AST_FUNCTION_CEILING, "min": libsbml.AST_FUNCTION_MIN,
    "max": libsbml.AST_FUNCTION_MAX, "quotient": libsbml.AST_FUNCTION_QUOTIENT, "rem": libsbml.AST_FUNCTION_REM,
    "factorial": libsbml.AST_FUNCTION_FACTORIAL, "pow": libsbml.AST_POWER, "xor": libsbml.AST_LOGICAL_XOR,
    "implies": libsbml.AST_LOGICAL_IMPLIES, "piecewise": libsbml.AST_FUNCTION_PIECEWISE,
    "sin": libsbml.AST_FUNCTION_SIN, "cos": libsbml.AST_FUNCTION_COS, "tan": libsbml.AST_FUNCTION_TAN,
    "sec": libsbml.AST_FUNCTION_SEC, "csc": libsbml.AST_FUNCTION_CSC, "cot": libsbml.AST_FUNCTION_COT,
    "sinh": libsbml.AST_FUNCTION_SINH, "cosh": libsbml.AST_FUNCTION_COSH, "tanh": libsbml.AST_FUNCTION_TANH,
    "sech": libsbml.AST_FUNCTION_SECH, "csch": libsbml.AST_FUNCTION_CSCH, "coth": libsbml.AST_FUNCTION_COTH,
    "asin": libsbml.AST_FUNCTION_ARCSIN, "acos": libsbml.AST_FUNCTION_ARCCOS, "atan": libsbml.AST_FUNCTION_ARCTAN,
    "asec": libsbml.AST_FUNCTION_ARCSEC, "acsc": libsbml.AST_FUNCTION_ARCCSC, "acot": libsbml.AST_FUNCTION_ARCCOT,
    "asinh": libsbml.AST_FUNCTION_ARCSINH, "acosh": libsbml.AST_FUNCTION_ARCCOSH,
    "atanh": libsbml.AST_FUNCTION_ARCTANH, "asech": libsbml.AST_FUNCTION_ARCSECH,
    "acsch": libsbml.AST_FUNCTION_ARCCSCH, "acoth": libsbml.AST_FUNCTION_ARCCOTH,
}
BINARY = {"+": libsbml.AST_PLUS, "-": libsbml.AST_MINUS, "*": libsbml.AST_TIMES, "/": libsbml.AST_DIVIDE,
          "^": libsbml.AST_POWER}
COMPARE = {"<": libsbml.AST_RELATIONAL_LT, "<=": libsbml.AST_RELATIONAL_LEQ, ">": libsbml.AST_RELATIONAL_GT,
           ">=": libsbml.AST_RELATIONAL_GEQ, "==": libsbml.AST_RELATIONAL_EQ, "!=": libsbml.AST_RELATIONAL_NEQ}
LOGIC = {"and": libsbml.AST_LOGICAL_AND, "or": libsbml.AST_LOGICAL_OR, "not": libsbml.AST_LOGICAL_NOT}


def export_sbml(model: Model, source: Optional[str] = None) -> str:
    """The SBML document (XML text) of a model; what SBML cannot hold is a HodecError located at the statement
    (`source`: the spec's text, for the excerpt under the message)."""
    refused = [Diagnostic(f"cannot export neural slot '{slot.name}' to SBML: networks are PEtab-SciML's part of a "
                          f"model, not SBML's (hodec export --petab writes them)", slot.span) for slot in model.slots]
    refused += input_refusals(model, "SBML")
    if refused:
        raise HodecError(refused, model.filename, source)
    return libsbml.writeSBMLToString(Exporter(model).document())


def input_refusals(model: Model, target: str) -> list[Diagnostic]:
    """Inputs, located: SBML (and PEtab over it) has no signal bound at run time."""
    return [Diagnostic(f"cannot export input '{item.name}' to {target}: {target} has no exogenous signals (a "
                       f"formula of t as a let has one)", item.span) for item in model.inputs]


def _node(kind, *children) -> libsbml.ASTNode:
    node = libsbml.ASTNode(kind)
    for child in children:
        node.addChild(child)
    return node


def _number(value: float) -> libsbml.ASTNode:
    node = libsbml.ASTNode(libsbml.AST_REAL)
    node.setValue(float(value))
    return node


def _name(name: str) -> libsbml.ASTNode:
    if name == TIME:
        node = libsbml.ASTNode(libsbml.AST_NAME_TIME)
        node.setName("time")
        return node
    node = libsbml.ASTNode(libsbml.AST_NAME)
    node.setName(name)
    return node


def _names(expr) -> list[str]:
    """The names an expression reads, in first-occurrence order, each once."""
    return list(dict.fromkeys(n.id for n in ast.names_in(expr)))


class Exporter:
    """One model's SBML document, built element by element in the order SBML lists them."""

    def __init__(self, model: Model, petab: bool = False):
        self.model = model
        self.doc = libsbml.SBMLDocument(LEVEL, VERSION)
        self.m = self.doc.createModel()
        self.m.setId(model.name)
        self.extra = self._function_params()  # function -> the params its body (or a function it calls) reads
        self.taken = {item.name for group in (model.params, model.states, model.lets, model.reactions,
                                              model.observables, model.functions, model.slots) for item in group}
        # size -> its compartment's id: the size's own name, but for a param in a PEtab problem, whose parameter
        # table lists parameters and not compartments: there the compartment's initial assignment reads the param
        params = {p.name for p in model.params}
        self.compartment_ids = {size: self.unique(f"compartment_{size}") if petab and size in params else size
                                for size in sorted({s.size for s in model.states if s.size is not None})}
        # observable -> the id of the parameter its rule sets; (slot, state) -> the parameter of that slot output
        self.observable_ids = {o.name: self.unique(f"observable_{o.name}") if petab else o.name
                               for o in model.observables}
        self.slot_params = {(slot.name, state): self.unique(f"{slot.name}_{state}")
                            for slot in model.slots if petab for state in slot.outputs or ()}

    # ------------------------------------------------------------ math
    def math(self, e) -> libsbml.ASTNode:
        if isinstance(e, ast.Num):
            return _number(e.value)
        if isinstance(e, ast.Name):
            return _name(e.id)
        if isinstance(e, ast.Neg):
            return _node(libsbml.AST_MINUS, self.math(e.operand))
        if isinstance(e, ast.Binary):
            return _node(BINARY[e.op], self.math(e.left), self.math(e.right))
        if isinstance(e, ast.Compare):
            return _node(COMPARE[e.op], self.math(e.left), self.math(e.right))
        if isinstance(e, ast.Logic):
            return _node(LOGIC[e.op], *(self.math(c) for c in ast.children(e)))
        if isinstance(e, ast.If):
            return _node(libsbml.AST_FUNCTION_PIECEWISE, self.math(e.then), self.math(e.cond), self.math(e.orelse))
        return self.call(e.func, [self.math(a) for a in e.args])

    def call(self, func: str, args: list) -> libsbml.ASTNode:
        if func in ELEMENTS:
            return _node(ELEMENTS[func], *args)
        if func == "sqrt":
            return _node(libsbml.AST_FUNCTION_ROOT, _number(2), *args)
        if func == "root":  # root(n, x): the degree first, as MathML's <degree>
            return _node(libsbml.AST_FUNCTION_ROOT, *args)
        if func == "log10":
            return _node(libsbml.AST_FUNCTION_LOG, _number(10), *args)
        if func == "sigmoid":  # 1 / (1 + exp(-x))
            return _node(libsbml.AST_DIVIDE, _number(1), _node(libsbml.AST_PLUS, _number(1), _node(
                libsbml.AST_FUNCTION_EXP, _node(libsbml.AST_MINUS, *args))))
        if func == "softplus":  # ln(1 + exp(x))
            return _node(libsbml.AST_FUNCTION_LN, _node(libsbml.AST_PLUS, _number(1),
                                                        _node(libsbml.AST_FUNCTION_EXP, *args)))
        if func == "hill":  # x^n / (K^n + x^n)
            x, k, n = args
            return _node(libsbml.AST_DIVIDE, _node(libsbml.AST_POWER, x, n), _node(
                libsbml.AST_PLUS, _node(libsbml.AST_POWER, k, n.deepCopy()),
                _node(libsbml.AST_POWER, x.deepCopy(), n.deepCopy())))
        node = _node(libsbml.AST_FUNCTION, *args, *(_name(p) for p in self.extra[func]))
        node.setName(func)
        return node

    def _function_params(self) -> dict:
        """Each function's params: those its body reads, then those of the functions it calls."""
        bodies = {f.name: f for f in self.model.functions}
        extra: dict[str, list] = {}

        def params(name: str) -> list:
            if name not in extra:  # the checks rule out recursion
                f = bodies[name]
                found = [n for n in _names(f.body) if n not in f.args]
                for called in dict.fromkeys(c.func for c in ast.calls_in(f.body)):
                    found += [p for p in (params(called) if called in bodies else ()) if p not in found]
                extra[name] = found
            return extra[name]
        for f in self.model.functions:
            params(f.name)
        return extra

    # ------------------------------------------------------------ the document
    def document(self) -> libsbml.SBMLDocument:
        self.functions()
        self.compartments()
        self.parameters()
        self.species()
        self.rules()
        self.reactions()
        self.events()
        return self.doc

    def functions(self):
        for f in self.model.functions:
            lambda_ = _node(libsbml.AST_LAMBDA, *(_bvar(a) for a in (*f.args, *self.extra[f.name])),
                            self.math(f.body))
            definition = self.m.createFunctionDefinition()
            definition.setId(f.name)
            definition.setMath(lambda_)

    def compartments(self):
        if any(s.size is None for s in self.model.states):
            self.default = self.unique(DEFAULT_COMPARTMENT)
            _compartment(self.m, self.default, 1.0, constant=True)
        params = {p.name: p for p in self.model.params}
        for size, ident in self.compartment_ids.items():
            if size not in params:  # a let of params: its rule (rules()) sets the size
                _compartment(self.m, size, None, constant=False)
            elif ident == size:
                _compartment(self.m, size, params[size].value, constant=True)
            else:
                _compartment(self.m, ident, None, constant=True)
                assignment = self.m.createInitialAssignment()
                assignment.setSymbol(ident)
                assignment.setMath(_name(size))

    def parameters(self):
        assigned = set(self.model.event_params)
        compartments = set(self.compartment_ids.values())
        for p in self.model.params:
            if p.name in compartments:
                continue
            parameter = self.m.createParameter()
            parameter.setId(p.name)
            parameter.setValue(p.value)
            parameter.setConstant(p.name not in assigned)
        for name in (*(let.name for let in self.model.lets), *self.observable_ids.values()):
            if name in compartments:
                continue
            parameter = self.m.createParameter()
            parameter.setId(name)
            parameter.setConstant(False)
        for name in self.slot_params.values():  # PEtab-SciML's hybridization sets them to the network's outputs
            parameter = self.m.createParameter()
            parameter.setId(name)
            parameter.setValue(0.0)
            parameter.setConstant(True)

    def species(self):
        for s in self.model.states:
            species = self.m.createSpecies()
            species.setId(s.name)
            species.setCompartment(self.compartment_ids[s.size] if s.size else self.default)
            species.setHasOnlySubstanceUnits(s.size is None)
            species.setBoundaryCondition(False)
            species.setConstant(False)
            if not isinstance(s.initial, ast.Num):
                assignment = self.m.createInitialAssignment()
                assignment.setSymbol(s.name)
                assignment.setMath(self.math(s.initial))
            elif s.size is None:
                species.setInitialAmount(s.initial.value)
            else:
                species.setInitialConcentration(s.initial.value)

    def rules(self):
        for name, value in (*((let.name, let.value) for let in self.model.lets),
                            *((self.observable_ids[o.name], o.value) for o in self.model.observables)):
            rule = self.m.createAssignmentRule()
            rule.setVariable(name)
            rule.setMath(self.math(value))
        reacting = {name for r in self.model.reactions for name in r.stoichiometry}
        # a state no reaction changes: its der terms and slot outputs are one rate rule (reactions() adds them
        # to a state that reactions change)
        terms = {der.target: [self.math(term) for term in der.terms] for der in self.model.ders
                 if der.target not in reacting}
        for (_, state), param in self.slot_params.items():
            if state not in reacting:
                terms.setdefault(state, []).append(_name(param))
        for state, rates in terms.items():
            rule = self.m.createRateRule()
            rule.setVariable(state)
            rule.setMath(functools.reduce(lambda a, b: _node(libsbml.AST_PLUS, a, b), rates))

    def reactions(self):
        for r in self.model.reactions:
            reaction = self.reaction(r.name, self.math(r.rate), r.reversible)
            for name, coefficient in r.reactants:
                _reference(reaction.createReactant(), name, coefficient)
            for name, coefficient in r.products:
                _reference(reaction.createProduct(), name, coefficient)
            self.modifiers(reaction, r.rate)
        reacting = {name for r in self.model.reactions for name in r.stoichiometry}
        sizes = {s.name: s.size for s in self.model.states}
        for der in self.model.ders:
            if der.target not in reacting:
                continue
            for k, term in enumerate(der.terms, 1):
                rate = self.math(term)
                if sizes[der.target] is not None:  # a term is the concentration's rate; a reaction moves amounts
                    rate = _node(libsbml.AST_TIMES, rate, _name(sizes[der.target]))
                reaction = self.reaction(self.unique(f"der_{der.target}_{k}"), rate, False)
                _reference(reaction.createProduct(), der.target, 1.0)
                self.modifiers(reaction, term)
        for (slot, state), param in self.slot_params.items():
            if state in reacting:
                rate = _name(param)
                if sizes[state] is not None:
                    rate = _node(libsbml.AST_TIMES, rate, _name(sizes[state]))
                _reference(self.reaction(self.unique(f"neural_{slot}_{state}"), rate, False).createProduct(), state,
                           1.0)

    def reaction(self, ident: str, rate: libsbml.ASTNode, reversible: bool) -> libsbml.Reaction:
        reaction = self.m.createReaction()
        reaction.setId(ident)
        reaction.setReversible(reversible)
        reaction.createKineticLaw().setMath(rate)
        return reaction

    def modifiers(self, reaction: libsbml.Reaction, rate):
        """The species a kinetic law reads and the reaction does not change: SBML lists them as modifiers."""
        listed = {reaction.getReactant(i).getSpecies() for i in range(reaction.getNumReactants())}
        listed |= {reaction.getProduct(i).getSpecies() for i in range(reaction.getNumProducts())}
        states = {s.name for s in self.model.states}
        for name in _names(rate):
            if name in states and name not in listed:
                reaction.createModifier().setSpecies(name)
                listed.add(name)

    def events(self):
        for index, event in enumerate(self.model.events, 1):
            if event.kind == "at":
                for k, time in enumerate(event.times, 1):
                    trigger = _node(libsbml.AST_RELATIONAL_GEQ, _name(TIME), self.math(time))
                    # initialValue false: a time at the start fires there, as `at t = T` does
                    self.event(self.unique(f"event_{index}_{k}"), trigger, False, event)
            else:  # initialValue true: a `when` already true at the start does not fire there
                self.event(self.unique(f"event_{index}"), self.math(event.trigger), True, event)

    def event(self, ident: str, trigger: libsbml.ASTNode, initial_value: bool, event):
        sbml = self.m.createEvent()
        sbml.setId(ident)
        sbml.setUseValuesFromTriggerTime(True)
        condition = sbml.createTrigger()
        condition.setMath(trigger)
        condition.setPersistent(True)
        condition.setInitialValue(initial_value)
        for a in event.assignments:
            value = self.math(a.value)
            if a.op != "=":
                value = _node(BINARY[a.op[0]], _name(a.target), value)
            assignment = sbml.createEventAssignment()
            assignment.setVariable(a.target)
            assignment.setMath(value)

    def unique(self, name: str) -> str:
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name


def _bvar(name: str) -> libsbml.ASTNode:
    node = _name(name)
    node.setBvar()
    return node


def _compartment(m, ident: str, size, constant: bool):
    compartment = m.createCompartment()
    compartment.setId(ident)
    compartment.setSpatialDimensions(3)
    compartment.setConstant(constant)
    if size is not None:
        compartment.setSize(size)


def _reference(reference, species: str, coefficient: float):
    reference.setSpecies(species)
    reference.setStoichiometry(coefficient)
    reference.setConstant(True)
