"""nbgrader configuration of the course.

The repository is the course root: exercises are written once, with their solutions and
hidden tests, in ``solutions/<assignment>/`` (nbgrader's source folder) and released to
students in ``exercises/<assignment>/`` by ``nbgrader generate_assignment``
(run ``python -m autograder release`` to regenerate every exercise).
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.course_id = "mlhep"
# Training cells take longer than nbgrader's default of 30 s per cell.
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
# A cell past its time limit is interrupted and grading goes on with the next cell.
c.ExecutePreprocessor.interrupt_on_timeout = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
