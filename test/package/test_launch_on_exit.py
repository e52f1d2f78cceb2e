"""The launch file stops the whole launch when a required node exits with an error.

``launch``/``launch_ros`` are not installable here, so the file is checked as source: every
node gets ``on_exit=stop_launch_on_error``, and that function emits launch's Shutdown event
for a non-zero exit status only.
"""

import ast
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[2] / 'launch' / 'learner.launch.py'


def _tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def test_every_node_stops_the_launch_when_it_fails():
    nodes = [n for n in ast.walk(_tree()) if isinstance(n, ast.Call)
             and getattr(n.func, 'id', '') == 'Node']
    assert len(nodes) == 3
    for node in nodes:
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get('on_exit') == 'stop_launch_on_error', keywords.get('executable')


def test_the_exit_handler_shuts_down_on_errors_only():
    func = next(n for n in ast.walk(_tree()) if isinstance(n, ast.FunctionDef)
                and n.name == 'stop_launch_on_error')
    assert [a.arg for a in func.args.args] == ['event', 'context']  # launch's OnProcessExit
    source = ast.unparse(func)
    assert 'if event.returncode == 0:\n        return None' in source
    assert 'EmitEvent(event=Shutdown(reason=reason))' in source
    assert 'event.process_name' in source
    imports = {alias.name for n in ast.walk(_tree()) if isinstance(n, ast.ImportFrom)
               for alias in n.names}
    assert {'EmitEvent', 'LogInfo', 'Shutdown', 'Node'} <= imports
