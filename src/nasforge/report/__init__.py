"""Seeing a search: HTML reports (``build``, ``search``, ``bench``, ``html``), live pages and TensorBoard
scalars (``live``), architecture diagrams (``draw``), policy plots (``policy``) and the LaNAS tree (``lanas``)."""
