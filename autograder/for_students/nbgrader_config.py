"""nbgrader's configuration for students: Validate (the notebook's toolbar button, or
``nbgrader validate NOTEBOOK`` from this folder) runs an exercise with these time limits.

An nbgrader exchange, where the course collects submissions through one, is set by the lecturer,
e.g. ``c.Exchange.root = "/srv/nbgrader/exchange"``.
"""

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "mlhep"
# Training cells take longer than nbgrader's default of 30 s per cell.
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
c.ExecutePreprocessor.interrupt_on_timeout = True
