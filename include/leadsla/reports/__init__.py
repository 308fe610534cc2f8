"""Reports: metrics computed from the store, charts, and the weekly/monthly/quarterly builders.

Everything here reads the store (never the CRM) and never writes anything but audit entries the
caller asks for; every figure keeps the record ids behind it so it can be drilled into.
"""
