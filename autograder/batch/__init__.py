"""Grading a class: the run (:mod:`.run`), its submissions (:mod:`.submissions`), its private
nbgrader course (:mod:`.private_course`), its held-out samples (:mod:`.held_out`), the worker
processes (:mod:`.worker`), and what comes out: reasons (:mod:`.diagnose`) and feedback pages
(:mod:`.feedback`). Everything here runs in the grader, outside any sandbox.
"""
