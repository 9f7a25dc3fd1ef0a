"""Tools on top of the compiler: ``explain`` (``report``), the portability audit (``audit``,
``audit_report``), the demo, and the models they compile (``model_zoo``, ``examples``).  They
use the front-end as a user does; nothing below imports them."""
