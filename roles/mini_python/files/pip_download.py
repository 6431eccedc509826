"""Download the wheels a Mini needs, on the control node: ``pip download`` with the Mini's environment markers.

    python3 pip_download.py MARKERS_JSON PIP_DOWNLOAD_ARGUMENTS...

``pip download --python-version X --platform P`` picks wheels by the Mini's tags and ``Requires-Python`` but
evaluates environment markers for the Python that runs pip (pypa/pip#11664): on a 3.11 control node botocore's
``urllib3<1.27; python_version < "3.10"`` is left out, and the Mini's offline install fails for want of it
(``sys_platform == "darwin"`` dependencies would be missed the same way). MARKERS_JSON is the marker
environment read on the Mini (PEP 508 names: python_version, sys_platform, platform_machine, ...); pip runs
unchanged otherwise.
"""
import json
import runpy
import sys

from pip._vendor.packaging import markers


def main(argv):
    """Run ``pip download ARGUMENTS`` with the markers of MARKERS_JSON over the control node's."""
    target = json.loads(argv[0])
    if not isinstance(target, dict) or "python_version" not in target:
        sys.exit("pip_download.py: MARKERS_JSON must be the Mini's marker environment (with python_version)")
    control_node = markers.default_environment
    markers.default_environment = lambda: dict(control_node(), **target)
    sys.argv = ["pip", "download"] + argv[1:]
    runpy.run_module("pip", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
