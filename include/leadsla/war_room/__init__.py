"""The War Room: a live dashboard inside the Airflow UI (FastAPI app served by the plugin in
plugins/war_room.py). `queries` reads the store, `figures` computes the range panel's figures from
those reads, `filters` parses the page's filters, `app` serves."""
