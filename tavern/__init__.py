"""The tavern: the realm's face.

Owns the web game (pages, Socket.IO relay, actions) and the Oracle (inference server and chat page).
Relays events from the event log; never trains and never moves quest files itself (it calls the
arena's intake functions).
"""
