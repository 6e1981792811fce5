"""The websockets server, its HTTP endpoints, and the bridge to the actors."""
