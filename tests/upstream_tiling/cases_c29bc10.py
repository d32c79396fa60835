"""Upstream unit tests of hicann/ops-transformer @ c29bc1069d3252c641e2aa059ec88f392d3f05ac (2025-11-15).

Every A3 case of the op_host tiling tests of the four operators aclnn_py binds, and the op_api cases of the
aclnn functions it binds (V3 dispatch/combine, V2 AddRmsNorm/barrier). Facts only; how the harness turns a test
into these facts is in ``docs/upstream-tiling-tests.md``. ``rejected_by`` cites the tiling file with the
abbreviations of ``../shared/spec/cann-versions.md`` (oDT dispatch, oCT combine, oBT barrier tiling).

Harness facts common to every tiling case here (tests/ut/framework_normal/common/): the tiling runs with the
SoC and platform the test gives (Ascend910_93, 20 cores, 196608-byte UB); HCCL_BUFFSIZE is not set, so the
window check uses 200 MB (oTU:301-317); a test that calls ExecuteTestCase with no expected status expects
GRAPH_FAILED (tiling_case_executor.h:26-31).
"""
from upstream_tiling import Env, Expect, Skipped, Tensor as T, case_factory

SNAPSHOT = "c29bc10"
A3 = "Ascend910_93"
PLATFORM = (20, 196608)

DISPATCH_TEST = "mc2/moe_distribute_dispatch_v2/tests/ut/op_host/test_moe_distribute_dispatch_v2_tiling.cpp"
COMBINE_TEST = "mc2/moe_distribute_combine_v2/tests/ut/op_host/test_moe_distribute_combine_v2_tiling.cpp"
ARN_TEST = ("mc2/moe_distribute_combine_add_rms_norm/tests/ut/op_host/"
            "test_moe_distribute_combine_add_rms_norm_tiling.cpp")
BARRIER_TEST = "mc2/distribute_barrier/tests/ut/op_host/test_distribute_barrier_tiling.cpp"
BA_TEST = "mc2/distribute_barrier/tests/ut/op_host/op_api/test_aclnn_distribute_barrier.cpp"
ARN_API_TEST = ("mc2/moe_distribute_combine_add_rms_norm/tests/ut/op_host/op_api/"
                "test_aclnn_moe_distribute_combine_add_rms_norm.cpp")
COMBINE_API_TEST = "mc2/moe_distribute_combine_v2/tests/ut/op_host/op_api/test_aclnn_moe_distribute_combine_v2.cpp"
DISPATCH_API_TEST = "mc2/moe_distribute_dispatch_v2/tests/ut/op_host/op_api/test_aclnn_moe_distribute_dispatch_v2.cpp"

A2 = "A2 tiling path: the tiling branches on Short_SoC_version == Ascend910B"
V1 = "aclnnDistributeBarrier (V1 API)"
ARN_V1 = ("aclnnMoeDistributeCombineAddRmsNorm (V1 API); four calls: success, NULL group_ep, 128-byte group_ep, "
          "128-byte group_tp")

OK = Expect(success=True)
FAIL = Expect(success=False)

_tiling = case_factory(snapshot=SNAPSHOT, layer="tiling", soc=A3, platform=PLATFORM, env=Env())
# op_api tests call aclnn...GetWorkspaceSize with the inner operator stubbed (no tiling); the barrier file sets no
# SoC and the V2 op_api layer has no SoC-dependent check (oBA.cpp)
_op_api = case_factory(snapshot=SNAPSHOT, layer="op_api", soc=None, platform=None, env=Env())

DISPATCH_CASES = (
    # MoeDistributeDispatchV2 tiling (aclnnMoeDistributeDispatchV3)
    _tiling(
        "moe_distribute_dispatch_test_tiling_0", DISPATCH_TEST + ":37", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by=(
            "oDT:842-843 assist_info_for_combine dim0 256 < 3 * A = 864 (shared-expert rank: A = maxBs 32 * 9 shared "
            "groups)"
        ),
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_1", DISPATCH_TEST + ":81", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7160), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7160), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:842-843 assist_info_for_combine dim0 128 < 3 * A = 432 (shared-expert rank: A = 16 * 9)",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_2", DISPATCH_TEST + ":125", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=1024, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7160), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7160), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:465-467 tp_rank_id 1024 outside [0, tp_world_size = 2)",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_3", DISPATCH_TEST + ":169", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=31, quant_mode=0, global_bs=0, expert_token_nums_type=0, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7160), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7160), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:692-695 moe_expert_num 256 not divisible by ep_world_size - shared_expert_rank_num = 257",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_4", DISPATCH_TEST + ":213", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=257, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=31, quant_mode=1, global_bs=0, expert_token_nums_type=0, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7168), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:1024-1025 quant_mode 1 (static quant) not supported",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_5", DISPATCH_TEST + ":258", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=10, global_bs=0, expert_token_nums_type=0, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7168), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:519-521 quant_mode 10 outside [0, 2]",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_6", DISPATCH_TEST + ":302", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=7, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=1, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((8, 7168), "float16"), expert_ids=T((8, 7), "int32")),
        outputs=dict(expand_x=T((64, 7168), "float16"), dynamic_scales=T((64,), "float32"),
                     assist_info_for_combine=T((512,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((8,), "int32"), tp_recv_counts=T((1,), "int32")),
        expect=Expect(success=True, tiling_key=10000),
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_7", DISPATCH_TEST + ":346", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=-1, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=2, global_bs=0, expert_token_nums_type=0, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:465-467 tp_rank_id -1 outside [0, tp_world_size = 2)",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_8", DISPATCH_TEST + ":390", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=1, moe_expert_num=256, group_tp="",
                   tp_world_size=2, tp_rank_id=1024, expert_shard_type=1, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=2, global_bs=1, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:465-467 tp_rank_id 1024 outside [0, tp_world_size = 2)",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_9", DISPATCH_TEST + ":434", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="",
                   tp_world_size=2, tp_rank_id=-1, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=2, global_bs=0, expert_token_nums_type=0, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((16, 7160), "float16"), expert_ids=T((16, 8), "int32")),
        outputs=dict(expand_x=T((576, 7160), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((128,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:465-467 tp_rank_id -1 outside [0, tp_world_size = 2)",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_10", DISPATCH_TEST + ":478", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=256, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by=(
            "oDT:824-826 expand_x dim0 576 < tp_world_size * A = 2 * 9216 (MoE rank: A = globalBs 9216 * min(L 1, K "
            "8))"
        ),
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_ep_world_size_384", DISPATCH_TEST + ":523", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=384, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:692-695 moe_expert_num 256 not divisible by 384 - 32",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_ep_world_size_72", DISPATCH_TEST + ":567", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:699-700 tp_world_size 2 with L = 216 / 54 = 4 experts per MoE rank",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_x_active_mask_2dims", DISPATCH_TEST + ":612", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32"), x_active_mask=T((32, 8), "bool")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:699-700 tp_world_size 2 with L = 4 experts per MoE rank",
    ),
    _tiling(
        "moe_distribute_dispatch_test_tiling_elastic_info", DISPATCH_TEST + ":659", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(x=T((32, 7168), "float16"), expert_ids=T((32, 8), "int32"), x_active_mask=T((32, 8), "bool"),
                    elastic_info=T((148,), "int32")),
        outputs=dict(expand_x=T((576, 7168), "float16"), dynamic_scales=T((576,), "float32"),
                     assist_info_for_combine=T((256,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((288,), "int32"), tp_recv_counts=T((2,), "int32")),
        expect=FAIL,
        rejected_by="oDT:824-826 expand_x dim0 576 < A = 9216 (elastic: A = max(32 * 4, 2304 * min(4, 8)))",
    ),
    _tiling(
        "moe_distribute_dispatch_test_zeroComputeExpertNum", DISPATCH_TEST + ":707", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=7, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=1, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=1, copy_expert_num=2, const_expert_num=3),
        inputs=dict(x=T((8, 7168), "float16"), expert_ids=T((8, 7), "int32")),
        outputs=dict(expand_x=T((64, 7168), "float16"), dynamic_scales=T((64,), "float32"),
                     assist_info_for_combine=T((512,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((8,), "int32"), tp_recv_counts=T((1,), "int32")),
        expect=Expect(success=True, tiling_key=10000),
    ),
    _tiling(
        "moe_distribute_dispatch_test_zeroComputeExpertNum_invalid", DISPATCH_TEST + ":751", "dispatch",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=7, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=1, quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="",
                   zero_expert_num=4294967295, copy_expert_num=2, const_expert_num=3),
        inputs=dict(x=T((8, 7168), "float16"), expert_ids=T((8, 7), "int32")),
        outputs=dict(expand_x=T((64, 7168), "float16"), dynamic_scales=T((64,), "float32"),
                     assist_info_for_combine=T((512,), "int32"), expert_token_nums=T((1,), "int64"),
                     ep_recv_counts=T((8,), "int32"), tp_recv_counts=T((1,), "int32")),
        expect=FAIL,
        rejected_by="oDT:573-576 moe_expert_num + zero + copy + const > INT32_MAX",
    ),
)

COMBINE_CASES = (
    # MoeDistributeCombineV2 tiling (aclnnMoeDistributeCombineV3)
    _tiling(
        "moe_distribute_combine_test_tiling_shared_expert_x_0", COMBINE_TEST + ":30", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=7, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=1, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((64, 7168), "float16"), expert_ids=T((8, 7), "int32"),
                    assist_info_for_combine=T((192,), "int32"), ep_send_counts=T((8,), "int32"),
                    expert_scales=T((8, 7), "float32"), tp_send_counts=T((1,), "int32"),
                    shared_expert_x=T((8, 7168), "float16")),
        outputs=dict(x=T((8, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:414-417 shared_expert_x given with shared_expert_rank_num 1",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_shared_expert_x_1", COMBINE_TEST + ":78", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=8, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=0,
                   shared_expert_rank_num=0, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((64, 7168), "float16"), expert_ids=T((8, 7), "int32"),
                    assist_info_for_combine=T((16384,), "int32"), ep_send_counts=T((8,), "int32"),
                    expert_scales=T((8, 7), "float32"), tp_send_counts=T((1,), "int32"),
                    shared_expert_x=T((8, 7168), "float16")),
        outputs=dict(x=T((8, 7168), "float16")),
        expect=Expect(success=True, tiling_key=10000),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_shared_expert_x_three_dims", COMBINE_TEST + ":127", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=8, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=0,
                   shared_expert_rank_num=0, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((64, 7168), "float16"), expert_ids=T((8, 7), "int32"),
                    assist_info_for_combine=T((8192,), "int32"), ep_send_counts=T((8,), "int32"),
                    expert_scales=T((8, 7), "float32"), tp_send_counts=T((1,), "int32"),
                    shared_expert_x=T((2, 4, 7168), "float16")),
        outputs=dict(x=T((8, 7168), "float16")),
        expect=Expect(success=True, tiling_key=10000),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_0", COMBINE_TEST + ":176", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=8, ep_rank_id=0, moe_expert_num=7, group_tp="tp_group",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=1, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((64, 7168), "float16"), expert_ids=T((8, 7), "int32"),
                    assist_info_for_combine=T((16384,), "int32"), ep_send_counts=T((8,), "int32"),
                    expert_scales=T((8, 7), "float32"), tp_send_counts=T((1,), "int32")),
        outputs=dict(x=T((8, 7168), "float16")),
        expect=Expect(success=True, tiling_key=10000),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_1", COMBINE_TEST + ":218", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7160), "float16"), expert_ids=T((16, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((2,), "int32"), tp_send_counts=T((32, 8), "float32")),
        outputs=dict(x=T((32, 7160), "float16")),
        expect=FAIL,
        rejected_by="oCT:324-327 expert_scales is 1-D",
        note=(
            "the test lists the inputs in an older order: slot 4 (expert_scales) holds a (2,) int32 tensor and slot 5"
            " (tp_send_counts) a (32, 8) float tensor"
        ),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_2", COMBINE_TEST + ":260", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=1024, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7160), "float16"), expert_ids=T((16, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((2,), "int32"), tp_send_counts=T((32, 8), "float32")),
        outputs=dict(x=T((32, 7160), "float16")),
        expect=FAIL,
        rejected_by="oCT:236-238 tp_rank_id 1024 outside [0, tp_world_size = 2)",
        note=(
            "the test lists the inputs in an older order: slot 4 (expert_scales) holds a (2,) int32 tensor and slot 5"
            " (tp_send_counts) a (32, 8) float tensor"
        ),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_3", COMBINE_TEST + ":302", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=288, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=31, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7160), "float16"), expert_ids=T((16, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((2,), "int32"), tp_send_counts=T((32, 8), "float32")),
        outputs=dict(x=T((32, 7160), "float16")),
        expect=FAIL,
        rejected_by="oCT:324-327 expert_scales is 1-D",
        note=(
            "the test lists the inputs in an older order: slot 4 (expert_scales) holds a (2,) int32 tensor and slot 5"
            " (tp_send_counts) a (32, 8) float tensor"
        ),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_ep_world_size_384", COMBINE_TEST + ":344", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=384, ep_rank_id=0, moe_expert_num=256, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:889-892 moe_expert_num 256 not divisible by 384 - 32",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_ep_world_size_72", COMBINE_TEST + ":386", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=32, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:889-892 moe_expert_num 216 not divisible by 72 - 32",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_x_activate_mask_2dims", COMBINE_TEST + ":428", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32"),
                    x_active_mask=T((32, 8), "bool")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:897-899 tp_world_size 2 with L = 216 / 54 = 4 experts per MoE rank",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_elastic_info", COMBINE_TEST + ":476", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32"),
                    x_active_mask=T((32, 8), "bool"), elastic_info=T((288,), "int32")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:897-899 tp_world_size 2 with L = 4 experts per MoE rank",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_moepp", COMBINE_TEST + ":525", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=6, copy_expert_num=6, const_expert_num=6),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32"),
                    x_active_mask=T((32, 8), "bool"), elastic_info=T((148,), "int32"),
                    ori_x=T((32, 7168), "float16"), const_expert_alpha_1=T((6,), "float16"),
                    const_expert_alpha_2=T((6,), "float16"), const_expert_v=T((6, 7168), "float16")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by="oCT:897-899 tp_world_size 2 with L = 4 experts per MoE rank",
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_copyExpert_without_OriX", COMBINE_TEST + ":578", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=6, copy_expert_num=6, const_expert_num=6),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32"),
                    x_active_mask=T((32, 8), "bool"), elastic_info=T((148,), "int32"),
                    const_expert_alpha_1=T((6,), "float16"), const_expert_alpha_2=T((6,), "float16"),
                    const_expert_v=T((6, 7168), "float16")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by=(
            "oCT:897-899 tp_world_size 2 with L = 4 experts per MoE rank (checked before the ori_x presence rule)"
        ),
    ),
    _tiling(
        "moe_distribute_combine_test_tiling_constExpert_without_OriX", COMBINE_TEST + ":631", "combine",
        attrs=dict(group_ep="ep_group", ep_world_size=72, ep_rank_id=0, moe_expert_num=216, group_tp="tp_group",
                   tp_world_size=2, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1,
                   shared_expert_rank_num=18, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((576, 7168), "float16"), expert_ids=T((32, 8), "int32"),
                    assist_info_for_combine=T((256,), "int32"), ep_send_counts=T((288,), "int32"),
                    expert_scales=T((32, 8), "float32"), tp_send_counts=T((2,), "int32"),
                    x_active_mask=T((32, 8), "bool"), elastic_info=T((148,), "int32"),
                    const_expert_alpha_1=T((6,), "float16"), const_expert_alpha_2=T((6,), "float16"),
                    const_expert_v=T((6, 7168), "float16")),
        outputs=dict(x=T((32, 7168), "float16")),
        expect=FAIL,
        rejected_by=(
            "oCT:897-899 tp_world_size 2 with L = 4 experts per MoE rank (checked before the ori_x presence rule)"
        ),
    ),
)

ADD_RMS_NORM_CASES = (
    # MoeDistributeCombineAddRmsNorm tiling (aclnnMoeDistributeCombineAddRmsNormV2)
    # parameter set at line 141
    _tiling(
        "Test_sample", ARN_TEST + ":66", "add_rms_norm",
        attrs=dict(group_ep="group_ep", ep_world_size=8, ep_rank_id=0, moe_expert_num=8, group_tp="group_tp",
                   tp_world_size=1, tp_rank_id=0, expert_shard_type=0, shared_expert_num=0,
                   shared_expert_rank_num=0, global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                   comm_alg="", norm_eps=1e-06, zero_expert_num=0, copy_expert_num=0, const_expert_num=0),
        inputs=dict(expand_x=T((64, 7168), "bfloat16"), expert_ids=T((8, 8), "int32"),
                    assist_info_for_combine=T((8192,), "int32"), ep_send_counts=T((8,), "int32"),
                    expert_scales=T((8, 8), "float32"), residual_x=T((8, 1, 7168), "bfloat16"),
                    gamma=T((7168,), "bfloat16"), tp_send_counts=T((1,), "int32"), x_active_mask=T((8,), "bool"),
                    shared_expert_x=T((8, 7168), "bfloat16")),
        outputs=dict(y=T((8, 1, 7168), "bfloat16"), rstd=T((8, 1, 1), "float32"), x=T((8, 1, 7168), "bfloat16")),
        expect=Expect(success=True, tiling_key=10000),
        note=(
            "TEST_P over one parameter set ('Test_sample'); every shape and attribute comes from the defaults of the "
            "test's TilingParams struct (A 64, BS 8, K 8, H 7168, ep 8, moe 8, tp 1); the zero/copy/const attributes "
            "are literal 0"
        ),
    ),
)

BARRIER_CASES = (
    # DistributeBarrier tiling (aclnnDistributeBarrierV2)
    _tiling(
        "distribute_barrier_test_tiling", BARRIER_TEST + ":29", "barrier",
        attrs=dict(group="group", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=Expect(success=True, tiling_key=10000, tiling_data="8 16 20 196352 0 0 ", tiling_data_word_bits=64,
                      tiling_data_offset="42 x 8 bytes", workspaces=(16777216,)),
    ),
    _tiling(
        "distribute_barrier_test_tiling_world_size_1", BARRIER_TEST + ":48", "barrier",
        attrs=dict(group="group", world_size=1),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=FAIL,
        rejected_by="oBT:130-132 world_size 1 outside [2, 384]",
    ),
    _tiling(
        "distribute_barrier_test_tiling_world_size_385", BARRIER_TEST + ":62", "barrier",
        attrs=dict(group="group", world_size=385),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=FAIL,
        rejected_by="oBT:130-132 world_size 385 outside [2, 384]",
    ),
    _tiling(
        "distribute_barrier_test_tiling_time_out", BARRIER_TEST + ":76", "barrier",
        attrs=dict(group="group", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16"), time_out=T((1,), "int32")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=Expect(success=True, tiling_key=10000, tiling_data="8 16 20 196352 0 1 ", tiling_data_word_bits=64,
                      tiling_data_offset="42 x 8 bytes", workspaces=(16777216,)),
    ),
    _tiling(
        "distribute_barrier_test_tiling_elastic_info", BARRIER_TEST + ":99", "barrier",
        attrs=dict(group="group", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16"), elastic_info=T((36,), "int32")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=Expect(success=True, tiling_key=10000, tiling_data="8 16 20 196352 0 256 ", tiling_data_word_bits=64,
                      tiling_data_offset="42 x 8 bytes", workspaces=(16777216,)),
    ),
    _tiling(
        "distribute_barrier_test_tiling_time_out_elastic_info", BARRIER_TEST + ":122", "barrier",
        attrs=dict(group="group", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16"), time_out=T((1,), "int32"), elastic_info=T((36,), "int32")),
        outputs=dict(x_ref=T((3, 4), "float16")),
        expect=Expect(success=True, tiling_key=10000, tiling_data="8 16 20 196352 0 257 ", tiling_data_word_bits=64,
                      tiling_data_offset="42 x 8 bytes", workspaces=(16777216,)),
    ),
)

OP_API_CASES = (
    # aclnnDistributeBarrierV2GetWorkspaceSize (x_ref (3, 4) float16, world_size 16)
    _op_api(
        "test_aclnn_distribute_barrier_v2_first_api", BA_TEST + ":74", "barrier",
        attrs=dict(group="test_distribute_barrier", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(),
        expect=Expect(success=True, status=0),
    ),
    _op_api(
        "test_aclnn_distribute_barrier_v2_first_api_nullptr_group", BA_TEST + ":88", "barrier",
        attrs=dict(group=None, world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(),
        expect=Expect(success=False, status=161001),
    ),
    _op_api(
        "test_aclnn_distribute_barrier_v2_first_api_group_min", BA_TEST + ":102", "barrier",
        attrs=dict(group="", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16")),
        outputs=dict(),
        expect=Expect(success=True, status=0),
    ),
    _op_api(
        "test_aclnn_distribute_barrier_v2_first_api_time_out", BA_TEST + ":116", "barrier",
        attrs=dict(group="test_distribute_barrier", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16"), time_out=T((1,), "int32")),
        outputs=dict(),
        expect=Expect(success=True, status=0),
    ),
    _op_api(
        "test_aclnn_distribute_barrier_v2_first_api_elastic_info", BA_TEST + ":131", "barrier",
        attrs=dict(group="test_distribute_barrier", world_size=16),
        inputs=dict(x_ref=T((3, 4), "float16"), elastic_info=T((36,), "int32")),
        outputs=dict(),
        expect=Expect(success=True, status=0),
    ),
)

CASES = DISPATCH_CASES + COMBINE_CASES + ADD_RMS_NORM_CASES + BARRIER_CASES + OP_API_CASES

OUT_OF_SCOPE = (
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_empty", DISPATCH_TEST + ":798", "Ascend910B", A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_fullmesh", DISPATCH_TEST + ":842", "Ascend910B", A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_hierarchy", DISPATCH_TEST + ":886", "Ascend910B", A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_error", DISPATCH_TEST + ":935", "Ascend910B", A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_empty_with_env", DISPATCH_TEST + ":980", "Ascend910B", A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_fullmesh_with_env", DISPATCH_TEST + ":1030", "Ascend910B",
            A2),
    Skipped("moe_distribute_dispatch_test_tiling_a2_commalg_fullmesh_zeroComputeExpert_not_zero",
            DISPATCH_TEST + ":1076", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_empty", COMBINE_TEST + ":685", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_empty_with_env", COMBINE_TEST + ":728", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_fullmesh", COMBINE_TEST + ":771", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_fullmesh_with_env", COMBINE_TEST + ":814", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_hierarchy", COMBINE_TEST + ":857", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_error", COMBINE_TEST + ":900", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_empty_with_env_commint8",
            COMBINE_TEST + ":942", "Ascend910B", A2),
    Skipped("moe_distribute_combine_test_tiling_a2_commalg_hierarchy_commint8", COMBINE_TEST + ":985", "Ascend910B",
            A2),
    Skipped("test_aclnn_distribute_barrier_first_api", BA_TEST + ":32", "not set", V1),
    Skipped("test_aclnn_distribute_barrier_first_api_nullptr_group", BA_TEST + ":46", "not set", V1),
    Skipped("test_aclnn_distribute_barrier_first_api_group_min", BA_TEST + ":60", "not set", V1),
    Skipped("test_moe_distribute_combine_add_rms_norm_1", ARN_API_TEST + ":38", "Ascend910_93", ARN_V1),
    Skipped("test_moe_distribute_combine_first_api", COMBINE_API_TEST + ":35", "not set",
            "aclnnMoeDistributeCombineV2 (V2 API)"),
    Skipped("test_aclnn_moe_distribute_dispatch_first_api", DISPATCH_API_TEST + ":35", "not set",
            "aclnnMoeDistributeDispatchV2 (V2 API)"),
)
