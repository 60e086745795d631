"""The grader's agent in a student's kernel: the one part of the grader that runs in the sandbox.

The sandbox (:mod:`autograder.sandbox`) binds this package alone, under an empty
``autograder/__init__.py``: :mod:`~autograder.kernel.agent` answers the test cells' requests and
:mod:`~autograder.kernel.wire` is the format both sides speak. Nothing here is trusted, and nothing
here may import the rest of ``autograder``.
"""
