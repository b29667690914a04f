"""Models from the ecosystem: SBML in (hodec.interop.sbml), with its MathML printer (hodec.interop.mathml)."""
