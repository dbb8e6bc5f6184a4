"""giamsat: the application (command line, configuration assembly, scheduling, lifecycle wiring).

``agent.kernel`` is the kernel every package builds on; nothing in it imports the rest of ``agent``.
"""
