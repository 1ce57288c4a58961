"""A sandbox Marketo: realistic traffic for the three Marketo Data Streams, sent to Fluxo (or any
receiver) with Adobe I/O Events' and the legacy Marketo push's own delivery rules.

``python manage.py simulate`` is the command; ``runner.run(config)`` the library entry point (the
benchmarks use ``generators.Generator`` directly). Nothing here touches the database or imports
another app: the simulator is a client of Fluxo, like Marketo is.
"""
