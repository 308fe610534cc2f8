"""The War Room: a live dashboard inside the Airflow UI (FastAPI app served by the plugin in
plugins/war_room.py). `queries` reads the store, `filters` parses the page's filters, `app` serves."""
