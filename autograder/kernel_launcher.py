"""Entry point of the grading kernelspec: ``python -m autograder.kernel_launcher CONNECTION_FILE ...``.

A module of its own (not imported by the package) so that ``-m`` runs it cleanly; the work is
in :mod:`autograder.sandbox`: join the student's cgroups that the grader's ``KernelBox`` names in
the environment (or set rlimits where there are none), then become ``bwrap ... ipykernel_launcher``.
"""

from autograder.sandbox import main

if __name__ == "__main__":
    main()
