"""Qt-free generators that the docks run in napari thread workers: a train session, prediction, scoring.

Each yields small typed events (``training.events`` for training) and never touches a layer: the docks turn
events into layer updates on the GUI thread. A script can iterate them without Qt.
"""
