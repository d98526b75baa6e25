"""The napari GUI (imports napari and Qt; the core never imports this package).

``widget``: the "Upscale (PULSE)" dock widget; ``runner``: one ``iter_upscale`` on a napari
worker thread; ``layers``: pure functions from a ``Result`` to layer-data tuples.
"""
