"""Airflow plugin: the War Room page inside the Airflow UI.

Mounts the FastAPI app from `leadsla.war_room.app` in the API server under /war-room and adds a
"War Room" navigation link that shows it inside the UI. The app requires Airflow's login (the JWT
the UI keeps in its cookie). Importing this file only builds the app object: no store is opened
until the first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from leadsla.war_room.app import create_app

URL_PREFIX = "/war-room"


class WarRoomPlugin(AirflowPlugin):
    name = "war_room"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "War Room"}]
    external_views = [
        {"name": "War Room", "href": f"{URL_PREFIX}/", "url_route": "war-room", "destination": "nav"}
    ]
