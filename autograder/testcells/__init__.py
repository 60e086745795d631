"""Test cells that run in the grader, out of reach of the student's code.

Plain nbgrader runs the test cells in the student's kernel, where one line of student code can
rewrite later cells, patch ``numpy.isclose`` or hide every error. Here nbgrader's ``Execute``
step is replaced by :class:`TrustedExecute`: the student's cells still run in their sandboxed
kernel, but each autograded test cell runs in the grader's own process, from the source kept
in the gradebook (hidden tests included, whatever the submitted cell says), in a namespace of
its own:

* the names the assignment's given cells import (``np``, ``roc_auc_score``, ``data_fetch``)
  are imported here, so student code cannot replace the tools a test judges with;
* every other name is looked up in the student's notebook (:mod:`autograder.kernel.agent`
  answers inside the kernel). Plain data (numbers, strings, lists, dicts, numpy arrays) comes back as a
  copy; anything else, such as a student's function or model, as a :class:`StudentObject` that
  can only ask the kernel to call it, index it or convert it to plain data. Comparisons and
  truth tests of a ``StudentObject`` act on that plain data, never on the student's
  ``__eq__`` or ``__bool__``;
* objects of the test passed into student code (a classifier factory) stay here, and the
  kernel gets a proxy that may call them or their public methods.

The hidden tests of a cell run after the notebook's last cell, so no later cell of the student's
can show what its functions kept of their inputs. Assertions, scores of quality tests and the
truth labels of held-out data never leave the grader. A test cell's outputs are built here: its
prints, the student's printed output during the calls (stdout and stderr, as before), and its
result or error. Nothing else the kernel sends during a test cell reaches the notebook, so a
forged result cannot earn points. The rest of nbgrader (gradebook, partial credit, feedback,
formgrader) is unchanged.

Its modules: :mod:`~autograder.testcells.execute` (the preprocessor that nbgrader runs),
:mod:`~autograder.testcells.channel` (the conversation with the kernel),
:mod:`~autograder.testcells.proxies` (the student's objects and the test's namespace) and
:mod:`~autograder.testcells.outputs` (what a test cell shows, and its score).
"""
