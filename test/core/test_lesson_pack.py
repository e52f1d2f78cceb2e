"""Lesson packs: exact export, verified files, refusals with reasons, import by lesson rules."""

import json

import pytest
from safetensors.torch import save_file
import torch

from cl_core_ros.core import mobilenet_v1
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.lesson_pack import (
    decode,
    MANIFEST_FILE,
    PackError,
    read_pack,
    TENSOR_FILE,
    write_pack,
)
from cl_core_ros.core.replay import balanced_quotas

A = '/robot_a/learner'
TAUGHT = ('chelsea', 'coffee', 'rocket')


def _top1(learner, photo_latents, names, label=lambda n: n):
    hits = total = 0
    for name in names:
        preds = learner.predict_latents(photo_latents[name, 'test'])
        hits += sum(p.labels[:1] == [label(name)] for p in preds)
        total += len(preds)
    return hits / total


@pytest.fixture
def robot_a(photo_latents, small_config):
    learner = Learner(small_config())
    for name in TAUGHT:
        learner.learn(name, photo_latents[name, 'train'])
    return learner


@pytest.fixture(scope='module')
def consolidated_a(photo_latents):
    """Robot A after a deep consolidation (its upper differs from the pretrained one)."""
    learner = Learner(LearnerConfig(deep_epochs=1, deep_batch_size=32, deep_buffer_size=60,
                                    fast_buffer_size=60))
    for name in TAUGHT:
        learner.learn(name, photo_latents[name, 'train'])
    learner.consolidate()
    return learner


def _round_trip(pack):
    manifest, tensors, pack_id = pack.encode()
    return decode(manifest, tensors)


def test_pack_carries_exactly_what_the_learner_keeps(robot_a, tmp_path):
    pack = robot_a.export_classes(['coffee'], origin=A)
    path, pack_id, size = write_pack(pack, tmp_path / 'coffee.pack')
    assert sorted(p.name for p in path.iterdir()) == [TENSOR_FILE, MANIFEST_FILE]
    back, read_id = read_pack(path)
    assert read_id == pack_id and size > 0
    assert back.signature == robot_a.signature()
    assert back.upper_fingerprint == robot_a.upper_fingerprint()
    (entry,) = back.classes
    state = robot_a.state_dict()
    cid = robot_a.labels.id_of('coffee')
    fast_y = state['fast_replay']['labels']
    assert entry.name == 'coffee' and entry.origin == A and entry.revision > 0
    assert torch.equal(entry.pool, state['fast_replay']['payload']['pool'][fast_y == cid])
    assert entry.seen == dict(state['fast_replay']['seen'].tolist())[cid] == 40
    pending = [p['latents'] for p in state['pending'] if p['class_id'] == cid]
    assert torch.equal(entry.pending.data, pending[0]['data'])
    assert torch.equal(entry.pending.scale, pending[0]['scale'])
    assert len(entry.deep) == 0  # nothing consolidated yet: the deep memory is empty
    assert torch.equal(entry.prototype_sum, state['prototypes']['sums'][cid])
    assert entry.prototype_count == int(state['prototypes']['counts'][cid])
    assert entry.spread_count == 1
    assert entry.spread_sum == pytest.approx(float(state['prototypes']['spread_sums'][cid]))
    assert torch.equal(entry.cwr_row, state['head']['cw'][cid])
    assert entry.cwr_count == int(state['head']['past'][cid])
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest['pack_sha256'] == pack_id and manifest['classes'][0]['name'] == 'coffee'
    assert b'pickle' not in (path / TENSOR_FILE).read_bytes()[:200]


def test_after_consolidation_the_deep_replay_is_exported(consolidated_a):
    robot_a = consolidated_a
    (entry,) = robot_a.export_classes(['rocket'], origin=A).classes
    deep, deep_y = robot_a._deep_memory.items()
    cid = robot_a.labels.id_of('rocket')
    assert len(entry.deep) == int((deep_y == cid).sum()) > 0 and len(entry.pending) == 0
    assert entry.deep_seen == robot_a._deep_memory.seen[cid]
    assert torch.equal(entry.deep.data, deep['data'][deep_y == cid])


def test_import_teaches_a_learner_that_never_saw_the_objects(robot_a, photo_latents,
                                                            small_config):
    robot_b = Learner(small_config())
    robot_b.learn('astronaut', photo_latents['astronaut', 'train'])
    own_before = _top1(robot_b, photo_latents, ['astronaut'])
    pack, pack_id = _round_trip(robot_a.export_classes(None, origin=A))
    report = robot_b.import_pack(pack, pack_id)
    assert [(n, a) for n, _, _, a in report.imported] == [(n, 'new') for n in TAUGHT]
    assert not report.reencoded and report.changed
    acc_a = _top1(robot_a, photo_latents, TAUGHT)
    acc_b = _top1(robot_b, photo_latents, TAUGHT)
    assert acc_b >= acc_a - 0.03, (acc_a, acc_b)
    assert _top1(robot_b, photo_latents, ['astronaut']) >= own_before - 0.05
    # same rules as a local lesson: class-balanced quotas, counts combined, pending lessons
    counts = robot_b._fast_memory.class_counts()
    seen = robot_b._fast_memory.seen
    assert counts == balanced_quotas({c: seen[c] for c in counts}, 60) or \
        sum(counts.values()) == 60 and max(counts.values()) - min(counts.values()) <= 1
    for name in TAUGHT:
        cid_a, cid_b = robot_a.labels.id_of(name), robot_b.labels.id_of(name)
        assert seen[cid_b] == robot_a._fast_memory.seen[cid_a]
        assert int(robot_b._head.past[cid_b]) > int(robot_a._head.past[cid_a])
        assert torch.allclose(robot_b._prototypes.means()[cid_b],
                              robot_a._prototypes.means()[cid_a])
    assert robot_b.pending_experiences == 1 + len(TAUGHT)
    origins = {robot_b.labels.name_of(c): o for c, o in robot_b.class_origins().items()}
    assert origins == {'astronaut': [''], **{n: [A] for n in TAUGHT}}
    # the knowledge survives a stored state, and a consolidation keeps recognising it
    restored = Learner(small_config())
    restored.load_state_dict(robot_b.state_dict())
    assert restored.class_origins() == robot_b.class_origins()
    assert restored.import_pack(pack, pack_id, once=True).duplicate
    again = restored.import_pack(pack, pack_id)  # explicitly: each class is known already
    assert not again.changed and len(again.skipped) == 3
    restored.forget('coffee')
    assert restored.import_pack(pack, pack_id, once=True).duplicate
    back = restored.import_pack(pack, pack_id)
    assert [(n, a) for n, _, _, a in back.imported] == [('coffee', 'new')]


def test_pool_vectors_are_recomputed_when_the_upper_differs(consolidated_a, photo_latents,
                                                           small_config):
    robot_a = consolidated_a
    robot_b = Learner(small_config())
    assert robot_b.upper_fingerprint() != robot_a.upper_fingerprint()
    report = robot_b.import_pack(*_round_trip(robot_a.export_classes(None, origin=A)))
    assert report.reencoded and len(report.imported) == 3
    assert _top1(robot_b, photo_latents, TAUGHT) >= _top1(robot_a, photo_latents, TAUGHT) - 0.1


def test_clash_policies(robot_a, photo_latents, small_config):
    pack, pack_id = _round_trip(robot_a.export_classes(['chelsea'], origin=A))
    robot_b = Learner(small_config())
    robot_b.learn('chelsea', photo_latents['chelsea', 'train'])
    version = robot_b.model_version
    with pytest.raises(PackError, match="label clash: 'chelsea'"):
        robot_b.import_pack(pack, pack_id, on_clash='refuse')
    assert robot_b.model_version == version and len(robot_b.labels) == 1
    with pytest.raises(PackError, match='on_clash'):
        robot_b.import_pack(pack, pack_id, on_clash='overwrite')

    renamed = Learner(small_config())
    renamed.load_state_dict(robot_b.state_dict())
    report = renamed.import_pack(pack, pack_id, on_clash='rename')
    assert report.imported[0][1:] == ('chelsea@robot_a', 1, 'renamed')

    cid = robot_b.labels.id_of('chelsea')
    past, seen = int(robot_b._head.past[cid]), robot_b._fast_memory.seen[cid]
    count = int(robot_b._prototypes.counts[cid])
    report = robot_b.import_pack(pack, pack_id, on_clash='merge')
    assert report.imported == [('chelsea', 'chelsea', cid, 'merged')]
    (entry,) = pack.classes
    assert robot_b._fast_memory.seen[cid] == seen + entry.seen
    assert int(robot_b._prototypes.counts[cid]) == count + entry.prototype_count
    assert int(robot_b._head.past[cid]) > past + entry.cwr_count  # + the import's lesson
    assert int(robot_b._prototypes.spread_counts[cid]) == 2
    assert robot_b.class_origins()[cid] == ['', A]


def test_revisions_from_one_origin_update_and_duplicates_change_nothing(
        robot_a, photo_latents, small_config):
    robot_b = Learner(small_config())
    old, old_id = _round_trip(robot_a.export_classes(['rocket'], origin=A))
    robot_b.import_pack(old, old_id, once=True)
    assert robot_b.import_pack(old, old_id, once=True).duplicate
    robot_a.learn('rocket', photo_latents['rocket', 'test'])  # a second lesson on A
    new, new_id = _round_trip(robot_a.export_classes(['rocket'], origin=A))
    version = robot_b.model_version
    report = robot_b.import_pack(new, new_id)
    assert report.imported[0][3] == 'updated' and robot_b.model_version > version
    cid = robot_b.labels.id_of('rocket')
    assert robot_b._fast_memory.seen[cid] == 60 and len(robot_b.labels) == 1
    assert int(robot_b._prototypes.spread_counts[cid]) == 2
    # the older pack arriving late (another file with the same content) is skipped
    again = robot_b.import_pack(old, 'f' * 64)
    assert not again.changed and 'newer revision' in again.skipped[0][1]
    robot_b.forget('rocket')
    assert robot_b.class_origins() == {}


def test_a_class_imported_from_elsewhere_keeps_its_origin_when_exported_again(
        robot_a, small_config):
    robot_b = Learner(small_config())
    robot_b.import_pack(*_round_trip(robot_a.export_classes(['coffee'], origin=A)))
    (entry,) = robot_b.export_classes(['coffee'], origin='/robot_b/learner').classes
    assert entry.origin == A and entry.name == 'coffee'
    robot_c = Learner(small_config())
    robot_c.import_pack(*_round_trip(robot_b.export_classes(['coffee'], origin='/b')))
    # the same revision straight from A is then known already
    direct = robot_c.import_pack(*_round_trip(robot_a.export_classes(['coffee'], origin=A)))
    assert not direct.changed


def _mobilenet_learner(tmp_path):
    torch.manual_seed(0)
    stages = mobilenet_v1.build_stages()
    state = {k: v.clone() for k, v in mobilenet_v1.stages_state_dict(stages).items()}
    for key, value in state.items():
        if key.endswith('running_var'):
            value.uniform_(0.5, 1.5)
    path = tmp_path / 'mobilenet.safetensors'
    save_file(state, str(path))
    return Learner(LearnerConfig(backbone='mobilenet_v1', mobilenet_weights=str(path),
                                 fast_buffer_size=60, deep_buffer_size=60))


def test_pack_of_another_backbone_is_refused_with_the_fields(tmp_path, robot_a):
    other = _mobilenet_learner(tmp_path)
    other.learn('thing', other.encode(torch.rand(8, 3, 192, 192)))
    pack, pack_id = _round_trip(other.export_classes(None, origin='/other/learner'))
    version = robot_a.model_version
    with pytest.raises(PackError, match="another backbone.*'backbone' differs"):
        robot_a.import_pack(pack, pack_id)
    assert robot_a.model_version == version and len(robot_a.labels) == 3


@pytest.mark.parametrize('damage', ['tensor byte', 'manifest name', 'manifest digest',
                                    'truncated tensors', 'missing manifest', 'extra file',
                                    'not json'])
def test_damaged_or_tampered_packs_are_refused(robot_a, tmp_path, damage):
    path, _, _ = write_pack(robot_a.export_classes(['chelsea'], origin=A), tmp_path / 'p')
    tensors, manifest = path / TENSOR_FILE, path / MANIFEST_FILE
    if damage == 'tensor byte':
        data = bytearray(tensors.read_bytes())
        data[-100] ^= 0x01
        tensors.write_bytes(bytes(data))
        reason = 'tampered pack: tensor file sha256'
    elif damage == 'manifest name':
        manifest.write_text(manifest.read_text().replace('"chelsea"', '"cheetah"'))
        reason = 'does not match its sha256 content address'
    elif damage == 'manifest digest':
        doc = json.loads(manifest.read_text())
        doc['classes'][0]['name'] = 'cheetah'
        doc['tree']['root']['$dict'][0][1][0]['$dict'][0][1] = 'cheetah'
        doc['pack_sha256'] = '0' * 64
        manifest.write_text(json.dumps(doc))
        reason = 'content address'
    elif damage == 'truncated tensors':
        tensors.write_bytes(tensors.read_bytes()[:1000])
        reason = 'the tensor file has 1000 bytes'
    elif damage == 'missing manifest':
        manifest.unlink()
        reason = 'missing or not a regular file'
    elif damage == 'extra file':
        (path / 'evil.pkl').write_bytes(b'\x80\x04')
        reason = "unexpected file 'evil.pkl'"
    else:
        manifest.write_bytes(b'\x80\x04\x95 not json')
        reason = 'damaged pack'
    with pytest.raises(PackError, match=reason):
        read_pack(path)


def test_export_errors(robot_a, small_config, tmp_path):
    with pytest.raises(KeyError, match='unknown label'):
        robot_a.export_classes(['zebra'], origin=A)
    with pytest.raises(ValueError, match='no classes'):
        Learner(small_config()).export_classes(None, origin=A)
    write_pack(robot_a.export_classes(['chelsea'], origin=A), tmp_path / 'p')
    with pytest.raises(PackError, match='already exists'):
        write_pack(robot_a.export_classes(['chelsea'], origin=A), tmp_path / 'p')


def test_an_imported_sample_keeps_slots_in_proportion_to_what_it_stands_for():
    from cl_core_ros.core.replay import ClassBalancedReplay
    memory = ClassBalancedReplay(20)
    memory.update({'pool': torch.zeros(20, 2)}, torch.zeros(20, dtype=torch.long),
                  torch.Generator().manual_seed(0))
    kept_new = []
    for seed in range(20):
        m = ClassBalancedReplay(20)
        m.load_state_dict(memory.state_dict())
        m.update({'pool': torch.ones(20, 2)}, torch.zeros(20, dtype=torch.long),
                 torch.Generator().manual_seed(seed), represents={0: 180})
        assert m.seen[0] == 200 and len(m) == 20
        kept_new.append(int(m.payload['pool'][:, 0].sum()))
    # 180 of 200 patterns: about 18 of the 20 slots go to the imported sample
    assert 16 <= sum(kept_new) / len(kept_new) <= 19.5, kept_new


def test_cwr_rows_from_another_learner_are_folded_in_by_the_cwr_rule():
    from cl_core_ros.core.cwr import CWRHead
    head = CWRHead(2, 2)
    head.merge_row(1, torch.tensor([1.0, 0.0]), 9)
    assert head.past.tolist() == [0, 9] and head.cw[1].tolist() == [1.0, 0.0]
    head.merge_row(1, torch.tensor([0.0, 1.0]), 1)  # a = sqrt(9 / 1) = 3
    assert head.past[1] == 10 and torch.allclose(head.cw[1], torch.tensor([0.75, 0.25]))
    with pytest.raises(ValueError, match='positive count'):
        head.merge_row(0, torch.zeros(2), 0)


@pytest.mark.parametrize('field, value', [
    ('input_size', 128), ('centre_sigma', 0.0), ('deep_layer', 'block9'),
    ('feature_dim', 1024), ('deep_shape', [80, 12, 12]), ('lower_fingerprint', 'f' * 64)])
def test_every_signature_field_is_checked(robot_a, small_config, field, value):
    import dataclasses
    pack, pack_id = _round_trip(robot_a.export_classes(['chelsea'], origin=A))
    other = dataclasses.replace(pack, signature={**pack.signature, field: value})
    robot_b = Learner(small_config())
    with pytest.raises(PackError, match=f"another backbone.*'{field}' differs"):
        robot_b.import_pack(other, pack_id)
    assert len(robot_b.labels) == 0
