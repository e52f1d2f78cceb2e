"""The package is built and installed as users expect: interfaces, executables, share files."""

import ast
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = Path(sys.prefix)


def test_generated_interfaces_import_with_documented_fields():
    from cl_core_ros.msg import LearnerStatus, Prediction
    from cl_core_ros.srv import (
        Consolidate,
        ForgetClass,
        LabelObject,
        ListClasses,
        RenameClass,
        Rollback,
        StartLearning,
    )

    pred = Prediction(labels=['mug'], class_ids=[0], scores=[0.9], unknown=False,
                      model_version=3)
    assert pred.header.frame_id == '' and list(pred.scores) == pytest.approx([0.9])
    assert LearnerStatus.STATE_CONSOLIDATING == 3
    assert set(LabelObject.Request.get_fields_and_field_types()) == {'label', 'num_frames',
                                                                    'add_to_batch'}
    assert {'success', 'message', 'class_id', 'is_new_class'} == set(
        LabelObject.Response.get_fields_and_field_types())
    assert 'training_seconds' in StartLearning.Response.get_fields_and_field_types()
    for srv in (Consolidate, ForgetClass, ListClasses, RenameClass, Rollback):
        assert srv.Request is not None and srv.Response is not None


@pytest.mark.parametrize('path', sorted(
    str(p.relative_to(ROOT)) for p in [*ROOT.glob('msg/*.msg'), *ROOT.glob('srv/*.srv')]))
def test_every_interface_field_is_commented(path):
    lines = (ROOT / path).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith('#') and line.strip() != '---':
            above = lines[i - 1].strip() if i else ''
            assert above.startswith('#') or '#' in line or '=' in line, \
                f'{path}:{i + 1} field without a comment: {line}'


def test_executables_launch_and_config_are_installed():
    for exe in ('camera_node', 'learner_node', 'consolidation_node', 'bringup'):
        assert (PREFIX / 'lib' / 'cl_core_ros' / exe).is_file()
    share = PREFIX / 'share' / 'cl_core_ros'
    assert (share / 'launch' / 'learner.launch.py').is_file()
    assert (share / 'config' / 'learner.yaml').is_file()
    assert (share / 'package.xml').is_file()
    assert (PREFIX / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'cl_core_ros').is_file()


def test_versions_agree_between_package_xml_and_setup_py():
    xml_version = re.search(r'<version>([^<]+)</version>',
                            (ROOT / 'package.xml').read_text()).group(1)
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == xml_version


def _launch_arguments() -> dict[str, str]:
    tree = ast.parse((ROOT / 'launch' / 'learner.launch.py').read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'DeclareLaunchArgument':
            name = node.args[0].value
            kw = {k.arg: k.value for k in node.keywords}
            assert 'description' in kw and 'default_value' in kw, name
            desc = kw['description']
            found[name] = ast.unparse(desc)
    return found


def test_launch_file_declares_documented_arguments_shared_with_bringup():
    args = _launch_arguments()
    assert {'namespace', 'params_file', 'image_topic', 'use_sim_time', 'state_dir'} <= set(args)
    from cl_core_ros.nodes.bringup import parse_args
    opts = parse_args(['use_sim_time:=true', 'namespace:=robot1', 'image_topic:=/cam/image'])
    assert (opts.use_sim_time, opts.namespace, opts.image_topic) == ('true', 'robot1',
                                                                     '/cam/image')
    for name in args:  # every launch argument is a bringup option too
        assert hasattr(opts, name), name
    source = (ROOT / 'launch' / 'learner.launch.py').read_text()
    assert 'eval(' not in source
    for executable in ('camera_node', 'learner_node', 'consolidation_node'):
        assert f"executable='{executable}'" in source


def test_params_file_covers_every_declared_parameter():
    import yaml

    from cl_core_ros.nodes import camera_node, consolidation_node, learner_node

    data = yaml.safe_load((ROOT / 'config' / 'learner.yaml').read_text())

    def flatten(d, prefix=''):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flatten(v, f'{prefix}{k}.'))
            else:
                out[f'{prefix}{k}'] = v
        return out

    for key, module in (('camera', camera_node), ('learner', learner_node),
                        ('consolidation', consolidation_node)):
        values = flatten(data[f'/**/{key}']['ros__parameters'])
        declared = {p.name: p for p in module.PARAMS}
        assert set(values) == set(declared), key
        for name, value in values.items():
            assert declared[name].check(value) == value or isinstance(value, list)
            assert declared[name].description


def test_lint_passes():
    ruff = Path(sys.prefix) / 'bin' / 'ruff'
    out = subprocess.run([str(ruff), 'check', '.'], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
