"""SBML (levels 2 and 3, read by python-libsbml) as a .hode spec a person can read and edit: SBML ids kept as
names (a reserved word renamed with a trailing '_', the id in a comment), kinetic laws and rules as written.

What maps to what (see the README's `hodec import` section): a compartment or parameter that never changes →
`param ... fixed`; an assignment rule → `let`; a rate rule → `state` + `der`; a variable that events set (or an
initial assignment reading states) → `state`; a species → `state` (`in C` for a concentration); a reaction →
`reaction` on the species that it changes (boundary and constant ones are read, not changed); an event →
`at t = T` (trigger `time >= T`, T > 0 a number) or `when`; a function definition → `function`; an algebraic
rule linear in its variable → the `let` of its solution; a hierarchical (comp) model → its flattened form.
Everything else is refused with a HodecError naming the element: never a silently different model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import libsbml

from ..errors import Diagnostic, HodecError, Span
from ..files import read_text
from ..model.model import RESERVED
from .algebraic import solve_linear
from .mathml import ATOM, MUL, Printer, Unsupported, format_number

MAX_SBML_BYTES = 256 * 2**20
# SBML packages that change no simulation (diagrams); any other package is refused.
# libsbml errors that leave the model as written: an XML declaration without encoding (UTF-8 is XML's default).
BENIGN = {libsbml.MissingXMLEncoding}
HARMLESS_PACKAGES = {"layout", "render", "l3v2extendedmath"}  # the last: L3v2 core math, a plugin in libsbml


@dataclass
class Imported:
    """An SBML model as .hode text, and how to read each SBML id's value in it."""

    text: str
    names: dict = field(default_factory=dict)  # SBML id -> .hode name
    species: dict = field(default_factory=dict)  # species id -> (compartment .hode name, whose value is an amount)
    rates: dict = field(default_factory=dict)  # reaction id -> its rate as .hode text

    def value(self, sbml_id: str, quantity: Optional[str] = None) -> str:
        """The .hode expression of an SBML id's value; for a species `quantity` asks 'amount' or 'concentration'
        (default: the species' own, as SBML math reads it)."""
        if sbml_id in self.rates:
            return self.rates[sbml_id]
        name = self.names[sbml_id]
        if sbml_id not in self.species or quantity is None:
            return name
        compartment, amount = self.species[sbml_id]
        if compartment is None:  # 0 dimensions, no size: an amount, which is all there is
            return name
        if quantity == "amount" and not amount:
            return f"{name} * {compartment}"
        if quantity == "concentration" and amount:
            return f"{name} / {compartment}"
        return name


def read_document(path) -> libsbml.SBMLDocument:
    """The SBML document of a file; XML and SBML errors are located (file:line:col)."""
    text = read_text(path, MAX_SBML_BYTES)
    doc = libsbml.readSBMLFromString(text)
    problems = [doc.getError(i) for i in range(doc.getNumErrors())]
    errors = [e for e in problems if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR and e.getErrorId() not in BENIGN]
    if errors:
        raise HodecError([Diagnostic(_message(e), _span(e)) for e in errors[:10]], str(path), text)
    if doc.getModel() is None:
        raise HodecError("the file has no SBML <model>", str(path))
    if doc.isPackageEnabled("comp"):
        doc.setLocationURI(Path(path).resolve().as_uri())  # external model definitions are found beside it
        _flatten(doc, path)
    return doc


def _flatten(doc: libsbml.SBMLDocument, path):
    """A hierarchical model (the comp package) as the one flat model it means (libsbml's flattening)."""
    before = doc.getNumErrors()
    properties = libsbml.ConversionProperties()
    properties.addOption("flatten comp", True)
    status = doc.convert(properties)
    errors = [doc.getError(i) for i in range(before, doc.getNumErrors())]
    errors = [e for e in errors if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if status != libsbml.LIBSBML_OPERATION_SUCCESS or errors:
        detail = "; ".join(_message(e) for e in errors[:3]) or f"libsbml status {status}"
        raise HodecError(f"cannot import the hierarchical (comp) model: libsbml cannot flatten it: {detail}",
                         str(path))


def _message(error) -> str:
    return " ".join(error.getMessage().split()) or error.getShortMessage()


def _span(error) -> Optional[Span]:
    line, column = error.getLine(), error.getColumn()
    return Span(line, max(column, 1), line, max(column, 1) + 1) if line > 0 else None


def import_sbml(path, values: Optional[Mapping[str, float]] = None) -> Imported:
    """Translate an SBML file; a construct .hode cannot say is a HodecError naming its element and id. `values`
    gives by SBML id the values of parameters and compartments the file leaves without one (as a PEtab problem's
    tables do); a value the file has is kept."""
    doc = read_document(path)
    try:
        return Translator(doc, values).translate(Path(path).name)
    except Refusal as err:
        raise HodecError(f"cannot import {err.element}: {err.reason}", str(path)) from None


class Refusal(Exception):
    def __init__(self, element: str, reason: str):
        super().__init__(f"{element}: {reason}")
        self.element, self.reason = element, reason


def _element(obj) -> str:
    """How an error names an SBML element: <tag id="..."> (the id where it has one)."""
    tag = obj.getElementName()
    ident = obj.getId() if obj.isSetId() else ""
    for attribute in ("variable", "symbol"):
        getter = getattr(obj, "get" + attribute.capitalize(), None)
        if not ident and getter is not None and getter():
            return f"<{tag} {attribute}=\"{getter()}\">"
    return f"<{tag} id=\"{ident}\">" if ident else f"<{tag}>"


class Translator:
    """One document's translation: the roles of its variables first, then the statements in .hode's order."""

    def __init__(self, doc: libsbml.SBMLDocument, values: Optional[Mapping[str, float]] = None):
        self.doc, self.m = doc, doc.getModel()
        self.supplied = dict(values or {})  # SBML id -> the caller's value for an element without one
        self.names: dict[str, str] = {}
        self.comments: dict[str, str] = {}  # .hode name -> the SBML id where it differs
        self.taken: set[str] = set()
        self.lines: list[str] = []
        self.rates: dict[str, str] = {}
        self.species: dict[str, tuple] = {}
        self.amounts: dict[str, str] = {}  # species id -> its amount state, where its compartment's size changes

    # ------------------------------------------------------------ the whole document
    def translate(self, filename: str) -> Imported:
        self.refuse_document()
        self.collect()
        self.name_everything()
        self.printer = Printer(self.resolve, self.function_table(), rate_of=self.rate_of)
        self.initial_printer = Printer(self.resolve, self.function_table(), time="0", rate_of=self.rate_of)
        self.header(filename)
        self.function_lines()
        self.variable_lines()
        self.reaction_lines()
        self.event_lines()
        return Imported("\n".join(self.lines) + "\n", dict(self.names), self.species, self.rates)

    def refuse_document(self):
        if self.doc.getLevel() < 2:
            raise Refusal("<sbml level=\"1\">", "SBML level 1 is not supported (convert it to level 2 or 3)")
        for i in range(self.doc.getNumPlugins()):
            package = self.doc.getPlugin(i).getPackageName()
            if package not in HARMLESS_PACKAGES:
                raise Refusal(f"the SBML package '{package}'", "SBML packages are not supported (but comp, which is "
                                                               "flattened, and the diagrams of layout and render)")
        for r in self.m.getListOfReactions():
            if r.isSetFast() and r.getFast():
                raise Refusal(_element(r), "fast reactions (a quasi-steady-state DAE) are not supported")
        for ev in self.m.getListOfEvents():
            if ev.isSetDelay():
                raise Refusal(_element(ev), "events with a <delay> are not supported")
            if ev.isSetPriority() and (_priority(ev) is None or not ev.getUseValuesFromTriggerTime()):
                raise Refusal(_element(ev), "an event <priority> is supported only as a number, with "
                                            "useValuesFromTriggerTime=\"true\"")
            if self.doc.getLevel() >= 3 and ev.isSetTrigger() and not ev.getTrigger().getPersistent() and \
                    self.m.getNumEvents() > 1:
                raise Refusal(_element(ev), "a trigger with persistent=\"false\" beside other events (one event "
                                            "may cancel it at the instant both fire; .hode applies both)")

    def collect(self):
        """Who sets each variable: assignment rules, rate rules, initial assignments, events. A rule, initial
        assignment or event assignment without math has no effect (SBML level 3 version 2), nor an event without
        a trigger."""
        self.assigned = {r.getVariable(): r for r in self.m.getListOfRules() if r.isAssignment() and r.isSetMath()}
        self.rate_ruled = {r.getVariable(): r for r in self.m.getListOfRules() if r.isRate() and r.isSetMath()}
        self.initial = {a.getSymbol(): a for a in self.m.getListOfInitialAssignments() if a.isSetMath()}
        self.events = [ev for ev in self.m.getListOfEvents() if ev.isSetTrigger() and ev.getTrigger().isSetMath()]
        self.event_set = {a.getVariable() for ev in self.events for a in ev.getListOfEventAssignments()
                          if a.isSetMath()}
        self.algebraic = self.algebraic_variables()
        self.ruled = set(self.assigned) | set(self.algebraic)  # the variables declared as a let of a rule
        self.functions = {f.getId(): f for f in self.m.getListOfFunctionDefinitions()}
        self.reaction_ids = {r.getId() for r in self.m.getListOfReactions()}
        self.referenced = {name for math in self.all_math() for name in _names(math)}
        rated = {name for math in self.all_math() for name in _rated(math)}
        self.referenced |= {r.getId() for r in self.m.getListOfReactions()
                            if any(sr.getSpecies() in rated for sr in _references(r))}  # rateOf reads their lets
        self.constant_memo: dict[str, bool] = {}

    def algebraic_variables(self) -> dict:
        """The variable each algebraic rule determines: among the variables no rule, reaction or event sets, the one
        it reads (matched rule by rule while some rule reads exactly one unmatched candidate)."""
        rules = [r for r in self.m.getListOfRules() if r.isAlgebraic() and r.isSetMath()]
        species = [self.m.getSpecies(sr.getSpecies()) for sr in self.species_references()]
        changed = {s.getId() for s in species if s is not None and not s.getBoundaryCondition()}
        free = {o.getId() for o in [*self.m.getListOfParameters(), *self.m.getListOfCompartments(),
                                    *self.m.getListOfSpecies()] if not o.getConstant()}
        free -= set(self.assigned) | set(self.rate_ruled) | self.event_set | changed
        matched: dict = {}
        while rules:
            for rule in rules:
                candidates = {n for n in _names(rule.getMath()) if n in free and n not in matched}
                if len(candidates) == 1:
                    matched[candidates.pop()] = rule
                    rules.remove(rule)
                    break
            else:
                raise Refusal("<algebraicRule>", f"cannot tell which variable 0 = "
                                                 f"{libsbml.formulaToL3String(rules[0].getMath())} determines "
                                                 f"(a DAE: only rules solved for one variable are supported)")
        return matched

    def all_math(self):
        for obj in [*self.m.getListOfRules(), *self.m.getListOfInitialAssignments(),
                    *(r.getKineticLaw() for r in self.m.getListOfReactions() if r.isSetKineticLaw()),
                    *(a for ev in self.m.getListOfEvents() for a in ev.getListOfEventAssignments()),
                    *(ev.getTrigger() for ev in self.m.getListOfEvents() if ev.isSetTrigger())]:
            if obj.isSetMath():
                yield obj.getMath()

    # ------------------------------------------------------------ names
    def name_everything(self):
        ids = [o.getId() for o in [*self.m.getListOfFunctionDefinitions(), *self.m.getListOfCompartments(),
                                   *self.m.getListOfSpecies(), *self.m.getListOfParameters(),
                                   *self.m.getListOfReactions(), *self.species_references()] if o.isSetId()]
        self.taken = set(ids)
        for ident in ids:
            self.names[ident] = self.fresh(ident) if ident in RESERVED else ident
            if self.names[ident] != ident:
                self.comments[self.names[ident]] = ident

    def fresh(self, base: str) -> str:
        """A name no SBML id and no other .hode name has: base, else base_, base__, ..."""
        name = base
        while name in self.taken or name in RESERVED:
            name += "_"
        self.taken.add(name)
        return name

    def species_references(self):
        for r in self.m.getListOfReactions():
            yield from _references(r)

    def resolve(self, ident: str):
        """A name's .hode text (a reaction id read by math is declared as a let of its rate)."""
        if ident not in self.names:
            raise Unsupported(f"'{ident}' is not a compartment, species, parameter or reaction of the model")
        return self.names[ident], ATOM

    def rate_of(self, ident: str):
        """rateOf(x) as an expression: a rate rule's formula, a species' reaction terms, 0 for what only events
        change; refused for what an assignment rule sets."""
        if ident in self.rate_ruled:
            return f"({self.math(self.rate_ruled[ident])})", ATOM
        species = self.m.getSpecies(ident)
        if ident in self.ruled or ident in self.reaction_ids or ident not in self.names or (
                species is not None and (self.conversion_factor(species) or self.kept_as_amount(species))):
            raise Unsupported(f"rateOf({ident}) (of a variable an assignment rule or a resized compartment sets)")
        if species is None or species.getBoundaryCondition() or species.getConstant():
            return "0", ATOM  # changed by events only: no rate between them
        terms = []
        for r in self.m.getListOfReactions():
            net = 0.0
            for sign, refs in ((-1, r.getListOfReactants()), (1, r.getListOfProducts())):
                for sr in refs:
                    if sr.getSpecies() != ident:
                        continue
                    if self.stoichiometry(r, sr) is not None:
                        raise Unsupported(f"rateOf({ident}) with a stoichiometry that varies in '{r.getId()}'")
                    net += sign * (sr.getStoichiometry() if sr.isSetStoichiometry() else 1.0)
            if net:
                terms.append(f"{format_number(net)} * {self.names[r.getId()]}")
        total = f"({' + '.join(terms) or '0'})"
        compartment = self.m.getCompartment(species.getCompartment())
        if species.getHasOnlySubstanceUnits() or _zero_dimensional(compartment):
            return total, ATOM
        return f"{total} / {self.names[compartment.getId()]}", MUL

    def kept_as_amount(self, s) -> bool:
        """A concentration whose compartment's size changes: declared by its amount (declare_amount)."""
        compartment = self.m.getCompartment(s.getCompartment())
        return not (s.getHasOnlySubstanceUnits() or _zero_dimensional(compartment)) and \
            s.getId() not in self.rate_ruled and s.getId() not in self.ruled and \
            not self.is_constant(compartment.getId())

    def function_table(self) -> dict:
        return {i: (self.names[i], f.getMath() if f.isSetMath() else None) for i, f in self.functions.items()}

    def math(self, obj, what: str = "number", printer: Optional[Printer] = None) -> str:
        """An element's math as .hode text ('number' or 'condition'); unsupported math refuses the element."""
        if not obj.isSetMath():
            raise Refusal(_element(obj), "it has no math")
        printer = printer or self.printer
        try:
            if what == "condition":
                return printer.condition_text(obj.getMath())
            return printer.number_text(obj.getMath())
        except Unsupported as err:
            raise Refusal(_element(obj), str(err)) from None

    @staticmethod
    def number(obj, value: float) -> str:
        """An element's value as a .hode number (refused where it is not finite)."""
        try:
            return format_number(value)
        except Unsupported as err:
            raise Refusal(_element(obj), str(err)) from None

    def comment(self, *names: str) -> str:
        ids = [f"'{self.comments[n]}'" for n in names if n in self.comments]
        return f"  # SBML id {', '.join(ids)}" if ids else ""

    # ------------------------------------------------------------ roles
    def is_constant(self, ident: str) -> bool:
        """Whether a variable keeps one value all along (so that a let of it is a constant)."""
        if ident not in self.constant_memo:
            self.constant_memo[ident] = False  # a cycle is not constant (and SBML forbids one)
            self.constant_memo[ident] = self._constant(ident)
        return self.constant_memo[ident]

    def _constant(self, ident: str) -> bool:
        if ident in self.rate_ruled or ident in self.event_set or ident in self.reaction_ids or \
                ident in self.algebraic:
            return False
        species = self.m.getSpecies(ident)
        if species is not None and not (species.getConstant() or species.getBoundaryCondition()):
            return False
        rule = self.assigned.get(ident) or self.initial.get(ident)
        return rule is None or self.math_is_constant(rule.getMath())

    def math_is_constant(self, math) -> bool:
        if math is None:  # no math: refused where it is printed
            return False
        return not _reads_time(math) and all(self.is_constant(n) for n in _names(math) if n not in self.functions)

    def role(self, ident: str) -> str:
        """let, state or param: how a compartment, parameter or species reference is declared."""
        if ident in self.ruled:
            return "let"
        if ident in self.rate_ruled or ident in self.event_set:
            return "state"
        if ident in self.initial:
            return "let" if self.math_is_constant(self.initial[ident].getMath()) else "state"
        return "param"

    # ------------------------------------------------------------ statements
    def header(self, filename: str):
        m = self.m
        self.lines.append(f"# Imported from {filename} (SBML level {self.doc.getLevel()} version "
                          f"{self.doc.getVersion()}) by hodec import.")
        name = m.getId() if m.isSetId() and m.getId() else Path(filename).stem
        name = name if name.isidentifier() and name.isascii() else "imported"
        self.lines.append(f"model {name}{_doc(m)}")

    def function_lines(self):
        for ident, f in self.section("function definitions", self.functions.items()):
            lam = f.getMath() if f.isSetMath() else None
            if lam is None or lam.getType() != libsbml.AST_LAMBDA:
                raise Refusal(_element(f), "it has no lambda")
            if self.printer.is_boolean(lam.getChild(lam.getNumChildren() - 1)):
                self.lines.append(f"# {ident}: a condition, inlined where it is called")
                continue
            args = [lam.getChild(i).getName() for i in range(lam.getNumChildren() - 1)]
            renamed = {a: self.fresh_local(a, args) for a in args}
            body_printer = Printer(lambda n: (renamed[n], ATOM) if n in renamed else self.resolve(n),
                                   self.function_table())
            try:
                body = body_printer.number_text(lam.getChild(lam.getNumChildren() - 1))
            except Unsupported as err:
                raise Refusal(_element(f), str(err)) from None
            self.lines.append(f"function {self.names[ident]}({', '.join(renamed.values())}) = {body}"
                              f"{self.comment(self.names[ident])}")

    @staticmethod
    def fresh_local(arg: str, args: list) -> str:
        name = arg
        while name in RESERVED or (name != arg and name in args):
            name += "_"
        return name

    def section(self, title: str, items) -> list:
        """The items, after a comment line titling them where there are any."""
        items = list(items)
        self.lines += ["", f"# {title}"] if items else []
        return items

    def variable_lines(self):
        for c in self.section("compartments", self.m.getListOfCompartments()):
            self.declare(c, c.getSize() if c.isSetSize() else None)
        for p in self.section("parameters", self.m.getListOfParameters()):
            self.declare(p, p.getValue() if p.isSetValue() else None)
        refs = [sr for sr in self.species_references() if sr.isSetId() and sr.getId() and self.doc.getLevel() >= 3]
        # (a level 2 species reference's id is no symbol of the math: its stoichiometry is a number or math)
        for sr in self.section("stoichiometries", refs):
            self.declare(sr, sr.getStoichiometry() if sr.isSetStoichiometry() else None)
        for s in self.section("species", self.m.getListOfSpecies()):
            self.declare_species(s)

    def declare(self, obj, value: Optional[float]):
        """A compartment, parameter or species reference: param, let or state (+ der)."""
        ident = obj.getId()
        name, role = self.names[ident], self.role(ident)
        value = self.supplied.get(ident) if value is None else value
        if role == "param" and value is None and _zero_dimensional(obj) and ident not in self.referenced:
            self.lines.append(f"# compartment '{ident}' has 0 dimensions and no size: its species are amounts")
            return
        if role == "let":
            text = self.rule_text(ident) if ident in self.ruled else self.math(self.initial[ident])
            self.lines.append(f"let {name} = {text}{self.comment(name)}")
            return
        if role == "param":
            if value is None:
                raise Refusal(_element(obj), "it has no value (and no rule or initial assignment sets one)")
            self.lines.append(f"param {name} = {self.number(obj, value)} fixed{_doc(obj)}{self.comment(name)}")
            return
        start = self.initial_value(obj, value)
        self.lines.append(f"state {name} = {start}{_doc(obj)}{self.comment(name)}")
        self.der_line(ident)

    def rule_text(self, ident: str) -> str:
        """The let of a variable a rule sets: an assignment rule's formula, an algebraic rule solved for it."""
        if ident not in self.algebraic:
            return self.math(self.assigned[ident])
        try:
            return f"{solve_linear(self.math(self.algebraic[ident]), self.names[ident])}  # algebraic rule solved"
        except Unsupported as err:
            raise Refusal("<algebraicRule>", str(err)) from None

    def initial_value(self, obj, value: Optional[float]) -> str:
        ident = obj.getId()
        if ident in self.initial:
            return self.math(self.initial[ident], printer=self.initial_printer)
        if value is None:
            raise Refusal(_element(obj), "it has no initial value")
        return self.number(obj, value)

    def der_line(self, ident: str):
        if ident in self.rate_ruled:
            name = self.names[ident]
            self.lines.append(f"der {name} = {self.math(self.rate_ruled[ident])}{self.comment(name)}")

    def declare_species(self, s):
        ident = s.getId()
        name = self.names[ident]
        compartment = self.m.getCompartment(s.getCompartment())
        size = self.names[compartment.getId()]
        amount = s.getHasOnlySubstanceUnits() or _zero_dimensional(compartment)
        size = None if _zero_dimensional(compartment) and not compartment.isSetSize() else size
        self.species[ident] = (size, amount)
        if ident in self.ruled:
            self.lines.append(f"let {name} = {self.rule_text(ident)}{self.comment(name)}")
            return
        if self.kept_as_amount(s):
            self.declare_amount(s, name, size)
            return
        start = self.species_start(s, size, amount)
        place = ""
        if not amount and ident not in self.rate_ruled:
            place = f" in {size}"
        self.lines.append(f"state {name} = {start}{place}{_doc(s)}{self.comment(name)}")
        self.der_line(ident)

    def declare_amount(self, s, name: str, size: str):
        """A concentration in a compartment whose size changes: its amount is the state (what reactions change and
        a resizing keeps), the concentration a let of it (.hode's compartment sizes are constant)."""
        ident = s.getId()
        amount = self.amounts[ident] = self.fresh(f"{name}_amount")
        start = (f"{_operand(self.species_start(s, size, False))} * {size}" if ident in self.initial
                 else self.species_start(s, size, True))
        self.lines.append(f"state {amount} = {start}  # the amount of species '{ident}' (its compartment's size "
                          f"changes)")
        self.lines.append(f"let {name} = {amount} / {size}{self.comment(name)}")

    def species_start(self, s, size: Optional[str], amount: bool) -> str:
        """The initial value in the species' own quantity (concentration unless hasOnlySubstanceUnits)."""
        if s.getId() in self.initial:
            return self.math(self.initial[s.getId()], printer=self.initial_printer)
        if s.isSetInitialConcentration():
            if size is None:
                raise Refusal(_element(s), "an initial concentration in a compartment without a size")
            value = self.number(s, s.getInitialConcentration())
            return f"{value} * {size}" if amount else value
        if s.isSetInitialAmount():
            value = self.number(s, s.getInitialAmount())
            return value if amount else f"{_operand(value)} / {size}"
        raise Refusal(_element(s), "it has no initial amount, concentration or assignment")

    # ------------------------------------------------------------ reactions
    def reaction_lines(self):
        for r in self.section("reactions (rates in amount per time)", self.m.getListOfReactions()):
            self.reaction(r)

    def reaction(self, r):
        ident = r.getId()
        if not r.isSetKineticLaw() or not r.getKineticLaw().isSetMath():
            raise Refusal(_element(r), "it has no kinetic law (no rate)")
        law = r.getKineticLaw()
        rate = self.kinetic_law(r, law)
        fixed, variable = self.participants(r)
        name = self.names[ident]
        if variable or ident in self.referenced:
            self.lines.append(f"let {name} = {rate}{self.comment(name)}")
            rate, name = name, self.fresh(f"{name}_reaction")
        self.rates[ident] = rate
        reactants = [f"{_coefficient(c)}{s}" for s, c in fixed if c < 0]
        products = [f"{_coefficient(c)}{s}" for s, c in fixed if c > 0]
        equation = " ".join(p for p in (" + ".join(reactants), "<->" if r.getReversible() else "->",
                                        " + ".join(products)) if p)
        if reactants or products:
            self.lines.append(f"reaction {name}: {equation} ; {rate}{self.comment(self.names[ident])}")
        for species, stoichiometry, sign in variable:
            side = f"{species} ->" if sign < 0 else f"-> {species}"
            self.lines.append(f"reaction {self.fresh(f'{name}_{species}')}: {side} ; "
                              f"{stoichiometry} * {_operand(rate)}  # {species}'s stoichiometry in {ident} varies")

    def kinetic_law(self, r, law) -> str:
        """The rate with the law's local parameters as params named reaction_parameter."""
        local = law.getListOfLocalParameters() if self.doc.getLevel() >= 3 else law.getListOfParameters()
        scope = {}
        for p in local:
            if not p.isSetValue():
                raise Refusal(_element(p), f"a local parameter of reaction '{r.getId()}' without a value")
            scope[p.getId()] = self.fresh(f"{self.names[r.getId()]}_{p.getId()}")
            self.lines.append(f"param {scope[p.getId()]} = {self.number(p, p.getValue())} fixed{_doc(p)}"
                              f"  # local parameter '{p.getId()}' of reaction '{r.getId()}'")
        printer = Printer(lambda n: (scope[n], ATOM) if n in scope else self.resolve(n), self.function_table(),
                          rate_of=lambda n: ("0", ATOM) if n in scope else self.rate_of(n))  # locals are constant
        return self.math(law, printer=printer)

    def participants(self, r):
        """The species a reaction changes: (name, net numeric coefficient) and (name, stoichiometry text, sign)
        for each stoichiometry set by rules, events or stoichiometryMath."""
        net: dict[str, float] = {}
        variable = []
        for sign, refs in ((-1, r.getListOfReactants()), (1, r.getListOfProducts())):
            for sr in refs:
                s = self.m.getSpecies(sr.getSpecies())
                if s is None:
                    raise Refusal(_element(sr), f"species '{sr.getSpecies()}' is not in the model")
                if s.getBoundaryCondition() or s.getConstant():
                    continue  # read by the rate, not changed by it
                if s.getId() in self.ruled or s.getId() in self.rate_ruled:
                    raise Refusal(_element(s), "a species set by a rule is changed by a reaction")
                name = self.amounts.get(s.getId(), self.names[s.getId()])
                text = self.stoichiometry(r, sr)
                factor = self.conversion_factor(s)
                if factor:  # the species' rate from reactions scaled: a stoichiometry times the factor
                    number = sr.getStoichiometry() if sr.isSetStoichiometry() else 1.0
                    text = f"{factor} * {text or format_number(number)}"
                if text is None:
                    net[name] = net.get(name, 0.0) + sign * (sr.getStoichiometry() if sr.isSetStoichiometry()
                                                             else 1.0)
                else:
                    variable.append((name, text, sign))
        return [(n, c) for n, c in net.items() if c != 0], variable

    def conversion_factor(self, s) -> str:
        """The .hode name of a species' conversionFactor (its own, else the model's), '' without one."""
        for obj in (s, self.m):
            if obj.isSetConversionFactor():
                if obj.getConversionFactor() not in self.names:
                    raise Refusal(_element(obj), f"conversionFactor '{obj.getConversionFactor()}' is not a "
                                                 f"parameter of the model")
                return self.names[obj.getConversionFactor()]
        return ""

    def stoichiometry(self, r, sr) -> Optional[str]:
        """None for a number (sr.getStoichiometry()); else the .hode text of a stoichiometry that varies."""
        if sr.isSetStoichiometryMath():
            math = sr.getStoichiometryMath()
            return _operand(self.math(math))
        ident = sr.getId() if sr.isSetId() else ""
        if ident and self.role(ident) != "param":
            return self.names[ident]
        if sr.isSetStoichiometry() and sr.getStoichiometry() != sr.getStoichiometry():
            raise Refusal(_element(sr), f"its stoichiometry in reaction '{r.getId()}' is not a number")
        if self.doc.getLevel() >= 3 and not sr.isSetStoichiometry():
            raise Refusal(_element(sr), f"no stoichiometry in reaction '{r.getId()}' (SBML level 3 has no default)")
        return None

    # ------------------------------------------------------------ events
    def event_lines(self):
        """Events with one trigger are one .hode event: SBML computes all their assignments from the values at the
        trigger, as one .hode event does (separate ones would apply one after the other). Where they assign one
        variable twice they stay apart (SBML leaves their order open)."""
        groups: dict[tuple, list] = {}
        for ev in self.section("events", self.events):
            trigger = ev.getTrigger()
            key = (libsbml.formulaToL3String(trigger.getMath()), self.doc.getLevel() < 3 or trigger.getInitialValue())
            groups.setdefault(key, []).append(ev)
        for group in groups.values():
            merged = [self.event_assignments(ev) for ev in group]
            targets = [t for ts, _ in merged for t in ts]
            if len(set(targets)) == len(targets):
                self.event(group[0], targets, [v for _, vs in merged for v in vs], group)
            elif all(ev.isSetPriority() for ev in group):
                self.event(group[0], *_by_priority(group, merged), group)
            else:
                for ev, (ts, vs) in zip(group, merged):
                    self.event(ev, ts, vs)

    def event(self, ev, targets: list, values: list, group: Optional[list] = None):
        """The .hode event of SBML event `ev` (of all of `group`, which share its trigger)."""
        trigger = ev.getTrigger()
        ids = [e.getId() for e in group or [ev] if e.isSetId() and e.getId()]
        label = f"  # event{'s' if len(ids) > 1 else ''} {', '.join(repr(i) for i in ids)}" if ids else ""
        initial_value = self.doc.getLevel() < 3 or trigger.getInitialValue()
        if not targets or (_always(trigger.getMath()) and initial_value):
            self.lines.append(f"# event '{ev.getId()}' never changes anything (no assignments, or a trigger true "
                              f"from the start on)")
            return
        if _always(trigger.getMath()):
            self.lines.append(f"at t = 0: {_assignments(targets, values)}  # initialValue=\"false\": fires at the "
                              f"start{label.replace('  #', ',')}")
            return
        time = self.event_time(trigger.getMath())
        if time is not None:
            self.lines.append(f"at t = {time}: {_assignments(targets, values)}{label}")
            return
        condition = self.math(trigger, "condition")
        if any(op in condition for op in ("==", "!=")):
            raise Refusal(_element(ev), "a trigger with == or != (no crossing for the solver to locate)")
        if not initial_value:
            guarded = [f"piecewise({v}, {condition}, {t})" for t, v in zip(targets, values)]
            self.lines.append(f"at t = 0: {_assignments(targets, guarded)}"
                              f"  # initialValue=\"false\": fires at the start where the trigger holds")
        self.lines.append(f"when {condition}: {_assignments(targets, values)}{label}")

    def event_assignments(self, ev) -> tuple[list, list]:
        """(targets, values) of an event. A concentration kept as its amount is assigned its amount (at the size
        before the event); one whose rate rule holds in a compartment the event resizes keeps its amount (SBML):
        c = c * size / new size, c the value the event assigns it if it does."""
        assigned = {a.getVariable(): a for a in ev.getListOfEventAssignments() if a.isSetMath()}
        targets, values = [], []
        for target, a in assigned.items():
            if target not in self.names or self.m.getReaction(target) is not None:
                raise Refusal(_element(a), f"'{target}' is not a variable of the model")
            targets.append(self.amounts.get(target, self.names[target]))
            values.append(self.math(a))
            if target in self.amounts:  # at the size before the event (a resize then keeps the amount)
                values[-1] = f"{_operand(values[-1])} * {self.species[target][0]}"
        for s in self.m.getListOfSpecies():
            size, name = s.getCompartment(), self.names[s.getId()]
            if size in assigned and s.getId() in self.rate_ruled and not s.getHasOnlySubstanceUnits():
                old = values[targets.index(name)] if name in targets else name
                value = f"{_operand(old)} * {self.names[size]} / {_operand(self.math(assigned[size]))}"
                if name in targets:
                    values[targets.index(name)] = value
                else:
                    targets.append(name)
                    values.append(value)
        return targets, values

    @staticmethod
    def event_time(trigger) -> Optional[str]:
        """T where the trigger is `time >= T` or `time > T` with T a number > 0: the event happens at T."""
        bound = _time_bound(trigger)
        return format_number(bound[0]) if bound is not None and bound[0] > 0 else None


def _priority(ev) -> Optional[float]:
    """An event's priority where it is a number (else None)."""
    priority = ev.getPriority()
    return _literal(priority.getMath()) if priority.isSetMath() else None


def _by_priority(group: list, merged: list) -> tuple[list, list]:
    """The assignments of events that fire together, executed highest priority first with every value from the
    trigger time (SBML): each target gets the value of the last, lowest-priority event that assigns it."""
    final: dict[str, str] = {}
    for (targets, values), _ in sorted(zip(merged, group), key=lambda pair: -_priority(pair[1])):
        final.update(zip(targets, values))
    return list(final), list(final.values())


def _time_bound(trigger) -> Optional[tuple[float, bool]]:
    """(T, whether T itself fires) for a trigger `time >= T` or `time > T` with T a number; else None."""
    if trigger.getType() not in (libsbml.AST_RELATIONAL_GEQ, libsbml.AST_RELATIONAL_GT) or \
            trigger.getNumChildren() != 2 or trigger.getChild(0).getType() != libsbml.AST_NAME_TIME:
        return None
    bound = _literal(trigger.getChild(1))
    return None if bound is None else (bound, trigger.getType() == libsbml.AST_RELATIONAL_GEQ)


def _always(trigger) -> bool:
    """A trigger `time >= T` (T <= 0) or `time > T` (T < 0): true from the start on."""
    bound = _time_bound(trigger)
    return bound is not None and (bound[0] <= 0 if bound[1] else bound[0] < 0)


def _literal(node) -> Optional[float]:
    """The value of a number, or of a negated one; None for anything else."""
    if node.getType() == libsbml.AST_MINUS and node.getNumChildren() == 1:
        value = _literal(node.getChild(0))
        return None if value is None else -value
    if node.getType() in (libsbml.AST_INTEGER, libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_RATIONAL):
        return node.getValue()
    return None


def _zero_dimensional(obj) -> bool:
    """A compartment of 0 dimensions: its species' values are amounts (no concentration without a size)."""
    return obj.getElementName() == "compartment" and obj.isSetSpatialDimensions() and \
        obj.getSpatialDimensions() == 0


def _assignments(targets: list, values: list) -> str:
    return ", ".join(f"{t} = {v}" for t, v in zip(targets, values))


def _coefficient(c: float) -> str:
    return "" if abs(c) == 1 else f"{format_number(abs(c))} "


def _operand(text: str) -> str:
    """Text as an operand of * or /: parenthesised unless it is a name, number or call."""
    return text if text.replace("_", "a").replace(".", "0").isalnum() else f"({text})"


def _doc(obj) -> str:
    """The element's SBML name as the declaration's doc string (quotes and line breaks dropped)."""
    if not obj.isSetName() or not obj.getName() or obj.getName() == getattr(obj, "getId", lambda: "")():
        return ""
    text = " ".join(obj.getName().replace('"', "'").split())
    return f' "{text}"'


def _names(math):
    """Every name a math tree reads (not the csymbols, not the arguments of a lambda)."""
    if math is None:
        return
    if math.getType() == libsbml.AST_NAME:
        yield math.getName()
    for i in range(math.getNumChildren()):
        yield from _names(math.getChild(i))


def _references(r):
    yield from r.getListOfReactants()
    yield from r.getListOfProducts()


def _rated(math):
    """The names a math tree takes rateOf of."""
    if math.getType() == libsbml.AST_FUNCTION_RATE_OF and math.getNumChildren() == 1:
        yield math.getChild(0).getName()
    for i in range(math.getNumChildren()):
        yield from _rated(math.getChild(i))


def _reads_time(math) -> bool:
    return math.getType() == libsbml.AST_NAME_TIME or any(_reads_time(math.getChild(i))
                                                          for i in range(math.getNumChildren()))
