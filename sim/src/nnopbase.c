/*
 * aclnn meta API of the CANN simulator (libnnopbase.so): tensor descriptors, arrays, scalars,
 * executor lifetime. Every object is tracked, so a destroy of an unknown or already destroyed
 * object returns an error instead of crashing.
 */
#include <stdlib.h>
#include <string.h>

#include "aclnn/aclnn_base.h"
#include "simcore.h"

#define P(x) ((const void *)(x))

/* Header shared by arrays, scalars and lists: tells the kinds apart (all tracked as SIM_OBJ_ARRAY). */
enum { ARR_INT = 0x41524931, ARR_FLOAT = 0x41524632, ARR_BOOL = 0x41524233, ARR_SCALAR = 0x41525334,
       ARR_TENSORS = 0x41525435, ARR_SCALARS = 0x41525336 };

typedef struct {
    uint32_t magic;
    int32_t dtype;     /* scalars */
    uint64_t size;     /* element count */
    void *items;       /* element storage (or pointer array for lists) */
} SimArray;

struct aclIntArray { SimArray a; };
struct aclFloatArray { SimArray a; };
struct aclBoolArray { SimArray a; };
struct aclScalar { SimArray a; };
struct aclTensorList { SimArray a; };
struct aclScalarList { SimArray a; };

/* ---- tensors ------------------------------------------------------------------------------------- */

static int fill_tensor(struct aclTensor *t, const char *api, const int64_t *viewDims, uint64_t viewDimsNum,
                       aclDataType dataType, const int64_t *stride, int64_t offset, aclFormat format,
                       const int64_t *storageDims, uint64_t storageDimsNum, void *data)
{
    if (!viewDims && viewDimsNum > 0) {
        sim_set_error("%s: viewDims is NULL but viewDimsNum=%llu", api, (unsigned long long)viewDimsNum);
        return -1;
    }
    if (!storageDims && storageDimsNum > 0) {
        sim_set_error("%s: storageDims is NULL but storageDimsNum=%llu", api, (unsigned long long)storageDimsNum);
        return -1;
    }
    if (viewDimsNum > SIM_MAX_DIMS || storageDimsNum > SIM_MAX_DIMS) {
        sim_set_error("%s: at most %d dimensions are supported (viewDimsNum=%llu storageDimsNum=%llu)", api,
                      SIM_MAX_DIMS, (unsigned long long)viewDimsNum, (unsigned long long)storageDimsNum);
        return -1;
    }
    for (uint64_t i = 0; i < viewDimsNum; i++) {
        if (viewDims[i] < 0) {
            sim_set_error("%s: viewDims[%llu]=%lld is negative", api, (unsigned long long)i, (long long)viewDims[i]);
            return -1;
        }
    }
    memset(t, 0, sizeof(*t));
    t->magic = SIM_TENSOR_MAGIC;
    t->dtype = (int32_t)dataType;
    t->format = (int32_t)format;
    t->ndim = viewDimsNum;
    int64_t expect = 1;
    for (int i = (int)viewDimsNum - 1; i >= 0; i--) {
        t->dims[i] = viewDims[i];
        t->strides[i] = stride ? stride[i] : expect;
        expect *= viewDims[i] > 0 ? viewDims[i] : 1;
    }
    t->offset = offset;
    t->storage_ndim = storageDimsNum;
    for (uint64_t i = 0; i < storageDimsNum; i++) t->storage_dims[i] = storageDims[i];
    t->data = data;
    return 0;
}

aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t *stride,
                           int64_t offset, aclFormat format, const int64_t *storageDims, uint64_t storageDimsNum,
                           void *tensorData)
{
    sim_record_call("aclCreateTensor",
                    "viewDims=%s viewDimsNum=%llu dataType=%d stride=%s offset=%lld format=%d storageDims=%s "
                    "storageDimsNum=%llu tensorData=%p",
                    sim_fmt_i64s(viewDims, viewDims ? viewDimsNum : 0), (unsigned long long)viewDimsNum,
                    (int)dataType, sim_fmt_i64s(stride, stride ? viewDimsNum : 0), (long long)offset, (int)format,
                    sim_fmt_i64s(storageDims, storageDims ? storageDimsNum : 0), (unsigned long long)storageDimsNum,
                    tensorData);
    struct aclTensor tmp;
    if (fill_tensor(&tmp, "aclCreateTensor", viewDims, viewDimsNum, dataType, stride, offset, format, storageDims,
                    storageDimsNum, tensorData) != 0)
        return NULL;
    struct aclTensor *t = malloc(sizeof(*t));
    if (!t) return NULL;
    *t = tmp;
    sim_track_add(SIM_OBJ_TENSOR, t, sizeof(*t));
    return t;
}

aclnnStatus aclInitTensor(aclTensor *tensor, const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType,
                          const int64_t *stride, int64_t offset, aclFormat format, const int64_t *storageDims,
                          uint64_t storageDimsNum, void *tensorDataAddr)
{
    sim_record_call("aclInitTensor",
                    "tensor=%s viewDims=%s viewDimsNum=%llu dataType=%d stride=%s offset=%lld format=%d "
                    "storageDims=%s storageDimsNum=%llu tensorDataAddr=%p",
                    sim_fmt_tensor(tensor), sim_fmt_i64s(viewDims, viewDims ? viewDimsNum : 0),
                    (unsigned long long)viewDimsNum, (int)dataType, sim_fmt_i64s(stride, stride ? viewDimsNum : 0),
                    (long long)offset, (int)format, sim_fmt_i64s(storageDims, storageDims ? storageDimsNum : 0),
                    (unsigned long long)storageDimsNum, tensorDataAddr);
    if (!sim_tensor_valid(tensor)) {
        sim_set_error("aclInitTensor: %p is not a live aclTensor", (void *)tensor);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    struct aclTensor tmp;
    if (fill_tensor(&tmp, "aclInitTensor", viewDims, viewDimsNum, dataType, stride, offset, format, storageDims,
                    storageDimsNum, tensorDataAddr) != 0)
        return ACLNN_ERR_PARAM_INVALID;
    *tensor = tmp;
    return ACLNN_SUCCESS;
}

aclnnStatus aclDestroyTensor(const aclTensor *tensor)
{
    sim_record_call("aclDestroyTensor", "tensor=%p", P(tensor));
    if (!tensor) return ACLNN_SUCCESS;
    if (sim_track_remove(SIM_OBJ_TENSOR, tensor) != 0) {
        sim_set_error("aclDestroyTensor: %p is not a live aclTensor (destroyed twice, or not from aclCreateTensor)",
                      P(tensor));
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    struct aclTensor *t = (struct aclTensor *)tensor;
    t->magic = 0;
    free(t);
    return ACLNN_SUCCESS;
}

static aclnnStatus check_tensor_out(const char *api, const aclTensor *tensor, const void *out)
{
    if (!tensor || !out) {
        sim_set_error("%s: %s is NULL", api, !tensor ? "tensor" : "the output pointer");
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (!sim_tensor_valid(tensor)) {
        sim_set_error("%s: %p is not a live aclTensor", api, P(tensor));
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    return ACLNN_SUCCESS;
}

static aclnnStatus copy_dims(const char *api, const aclTensor *tensor, const int64_t *src, uint64_t n, int64_t **out,
                             uint64_t *num)
{
    if (!tensor || !out || !num) {
        sim_set_error("%s: tensor, the dims pointer and the count pointer must not be NULL", api);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (!sim_tensor_valid(tensor)) {
        sim_set_error("%s: %p is not a live aclTensor", api, P(tensor));
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    int64_t *v = malloc((n ? n : 1) * sizeof(int64_t));
    if (!v) return ACLNN_ERR_INNER;
    memcpy(v, src, n * sizeof(int64_t));
    *out = v;
    *num = n;
    return ACLNN_SUCCESS;
}

aclnnStatus aclGetViewShape(const aclTensor *tensor, int64_t **viewDims, uint64_t *viewDimsNum)
{
    sim_record_call("aclGetViewShape", "tensor=%s viewDims=%p viewDimsNum=%p", sim_fmt_tensor(tensor), P(viewDims),
                    P(viewDimsNum));
    if (!sim_tensor_valid(tensor)) return copy_dims("aclGetViewShape", tensor, NULL, 0, viewDims, viewDimsNum);
    return copy_dims("aclGetViewShape", tensor, tensor->dims, tensor->ndim, viewDims, viewDimsNum);
}

aclnnStatus aclGetStorageShape(const aclTensor *tensor, int64_t **storageDims, uint64_t *storageDimsNum)
{
    sim_record_call("aclGetStorageShape", "tensor=%s storageDims=%p storageDimsNum=%p", sim_fmt_tensor(tensor),
                    P(storageDims), P(storageDimsNum));
    if (!sim_tensor_valid(tensor)) return copy_dims("aclGetStorageShape", tensor, NULL, 0, storageDims, storageDimsNum);
    return copy_dims("aclGetStorageShape", tensor, tensor->storage_dims, tensor->storage_ndim, storageDims,
                     storageDimsNum);
}

aclnnStatus aclGetViewStrides(const aclTensor *tensor, int64_t **stridesValue, uint64_t *stridesNum)
{
    sim_record_call("aclGetViewStrides", "tensor=%s stridesValue=%p stridesNum=%p", sim_fmt_tensor(tensor),
                    P(stridesValue), P(stridesNum));
    if (!sim_tensor_valid(tensor)) return copy_dims("aclGetViewStrides", tensor, NULL, 0, stridesValue, stridesNum);
    return copy_dims("aclGetViewStrides", tensor, tensor->strides, tensor->ndim, stridesValue, stridesNum);
}

aclnnStatus aclGetViewOffset(const aclTensor *tensor, int64_t *offset)
{
    sim_record_call("aclGetViewOffset", "tensor=%s offset=%p", sim_fmt_tensor(tensor), P(offset));
    aclnnStatus rc = check_tensor_out("aclGetViewOffset", tensor, offset);
    if (rc) return rc;
    *offset = tensor->offset;
    return ACLNN_SUCCESS;
}

aclnnStatus aclGetFormat(const aclTensor *tensor, aclFormat *format)
{
    sim_record_call("aclGetFormat", "tensor=%s format=%p", sim_fmt_tensor(tensor), P(format));
    aclnnStatus rc = check_tensor_out("aclGetFormat", tensor, format);
    if (rc) return rc;
    *format = (aclFormat)tensor->format;
    return ACLNN_SUCCESS;
}

aclnnStatus aclGetDataType(const aclTensor *tensor, aclDataType *dataType)
{
    sim_record_call("aclGetDataType", "tensor=%s dataType=%p", sim_fmt_tensor(tensor), P(dataType));
    aclnnStatus rc = check_tensor_out("aclGetDataType", tensor, dataType);
    if (rc) return rc;
    *dataType = (aclDataType)tensor->dtype;
    return ACLNN_SUCCESS;
}

aclnnStatus aclSetRawTensorAddr(aclTensor *tensor, void *addr)
{
    sim_record_call("aclSetRawTensorAddr", "tensor=%s addr=%p", sim_fmt_tensor(tensor), addr);
    if (!sim_tensor_valid(tensor)) {
        sim_set_error("aclSetRawTensorAddr: %p is not a live aclTensor", P(tensor));
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    tensor->data = addr;
    return ACLNN_SUCCESS;
}

aclnnStatus aclGetRawTensorAddr(const aclTensor *tensor, void **addr)
{
    sim_record_call("aclGetRawTensorAddr", "tensor=%s addr=%p", sim_fmt_tensor(tensor), P(addr));
    aclnnStatus rc = check_tensor_out("aclGetRawTensorAddr", tensor, addr);
    if (rc) return rc;
    *addr = tensor->data;
    return ACLNN_SUCCESS;
}

/* ---- arrays, scalars, lists ---------------------------------------------------------------------- */

static SimArray *array_new(uint32_t magic, const void *items, uint64_t count, size_t item_size)
{
    if (count > ((uint64_t)1 << 40) / (item_size ? item_size : 1)) return NULL;
    SimArray *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    size_t bytes = (size_t)count * item_size;
    a->items = malloc(bytes ? bytes : 1);
    if (!a->items) {
        free(a);
        return NULL;
    }
    if (bytes) memcpy(a->items, items, bytes);
    a->magic = magic;
    a->size = count;
    sim_track_add(SIM_OBJ_ARRAY, a, sizeof(*a) + bytes);
    return a;
}

static aclnnStatus array_destroy(const char *api, const void *p, uint32_t magic, const char *what)
{
    if (!p) return ACLNN_SUCCESS;
    SimArray *a = (SimArray *)p;
    if (!sim_track_has(SIM_OBJ_ARRAY, a) || a->magic != magic || sim_track_remove(SIM_OBJ_ARRAY, a) != 0) {
        sim_set_error("%s: %p is not a live %s (destroyed twice, or another kind of object)", api, p, what);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    a->magic = 0;
    free(a->items);
    free(a);
    return ACLNN_SUCCESS;
}

static int check_items(const char *api, const void *value, uint64_t size)
{
    if (!value && size > 0) {
        sim_set_error("%s: value is NULL but size=%llu", api, (unsigned long long)size);
        return -1;
    }
    return 0;
}

aclIntArray *aclCreateIntArray(const int64_t *value, uint64_t size)
{
    sim_record_call("aclCreateIntArray", "value=%s size=%llu", sim_fmt_i64s(value, value ? size : 0),
                    (unsigned long long)size);
    if (check_items("aclCreateIntArray", value, size)) return NULL;
    return (aclIntArray *)array_new(ARR_INT, value, size, sizeof(int64_t));
}

aclFloatArray *aclCreateFloatArray(const float *value, uint64_t size)
{
    sim_record_call("aclCreateFloatArray", "value=%p size=%llu", P(value), (unsigned long long)size);
    if (check_items("aclCreateFloatArray", value, size)) return NULL;
    return (aclFloatArray *)array_new(ARR_FLOAT, value, size, sizeof(float));
}

aclBoolArray *aclCreateBoolArray(const bool *value, uint64_t size)
{
    sim_record_call("aclCreateBoolArray", "value=%p size=%llu", P(value), (unsigned long long)size);
    if (check_items("aclCreateBoolArray", value, size)) return NULL;
    return (aclBoolArray *)array_new(ARR_BOOL, value, size, sizeof(bool));
}

aclScalar *aclCreateScalar(void *value, aclDataType dataType)
{
    sim_record_call("aclCreateScalar", "value=%p dataType=%d", value, (int)dataType);
    size_t sz = sim_dtype_size((int32_t)dataType);
    if (!value || sz == 0) {
        sim_set_error("aclCreateScalar: value is NULL or dataType=%d has no element size", (int)dataType);
        return NULL;
    }
    SimArray *a = array_new(ARR_SCALAR, value, 1, sz);
    if (a) a->dtype = (int32_t)dataType;
    return (aclScalar *)a;
}

aclTensorList *aclCreateTensorList(const aclTensor *const *value, uint64_t size)
{
    sim_record_call("aclCreateTensorList", "value=%p size=%llu", P(value), (unsigned long long)size);
    if (check_items("aclCreateTensorList", value, size)) return NULL;
    return (aclTensorList *)array_new(ARR_TENSORS, value, size, sizeof(void *));
}

aclScalarList *aclCreateScalarList(const aclScalar *const *value, uint64_t size)
{
    sim_record_call("aclCreateScalarList", "value=%p size=%llu", P(value), (unsigned long long)size);
    if (check_items("aclCreateScalarList", value, size)) return NULL;
    return (aclScalarList *)array_new(ARR_SCALARS, value, size, sizeof(void *));
}

aclnnStatus aclDestroyIntArray(const aclIntArray *array)
{
    sim_record_call("aclDestroyIntArray", "array=%p", P(array));
    return array_destroy("aclDestroyIntArray", array, ARR_INT, "aclIntArray");
}

aclnnStatus aclDestroyFloatArray(const aclFloatArray *array)
{
    sim_record_call("aclDestroyFloatArray", "array=%p", P(array));
    return array_destroy("aclDestroyFloatArray", array, ARR_FLOAT, "aclFloatArray");
}

aclnnStatus aclDestroyBoolArray(const aclBoolArray *array)
{
    sim_record_call("aclDestroyBoolArray", "array=%p", P(array));
    return array_destroy("aclDestroyBoolArray", array, ARR_BOOL, "aclBoolArray");
}

aclnnStatus aclDestroyScalar(const aclScalar *scalar)
{
    sim_record_call("aclDestroyScalar", "scalar=%p", P(scalar));
    return array_destroy("aclDestroyScalar", scalar, ARR_SCALAR, "aclScalar");
}

/* Lists own their elements (documented for aclDestroyTensorList). */
static aclnnStatus list_destroy(const char *api, const void *p, uint32_t magic, const char *what, int tensors)
{
    if (!p) return ACLNN_SUCCESS;
    const SimArray *a = p;
    if (!sim_track_has(SIM_OBJ_ARRAY, a) || a->magic != magic) {
        sim_set_error("%s: %p is not a live %s (destroyed twice?)", api, p, what);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    void **items = a->items;
    for (uint64_t i = 0; i < a->size; i++) {
        if (!items[i]) continue;
        if (tensors) {
            if (sim_track_remove(SIM_OBJ_TENSOR, items[i]) == 0) {
                ((struct aclTensor *)items[i])->magic = 0;
                free(items[i]);
            }
        } else {
            SimArray *s = items[i];
            if (sim_track_has(SIM_OBJ_ARRAY, s) && s->magic == ARR_SCALAR && sim_track_remove(SIM_OBJ_ARRAY, s) == 0) {
                s->magic = 0;
                free(s->items);
                free(s);
            }
        }
    }
    return array_destroy(api, p, magic, what);
}

aclnnStatus aclDestroyTensorList(const aclTensorList *array)
{
    sim_record_call("aclDestroyTensorList", "array=%p", P(array));
    return list_destroy("aclDestroyTensorList", array, ARR_TENSORS, "aclTensorList", 1);
}

aclnnStatus aclDestroyScalarList(const aclScalarList *array)
{
    sim_record_call("aclDestroyScalarList", "array=%p", P(array));
    return list_destroy("aclDestroyScalarList", array, ARR_SCALARS, "aclScalarList", 0);
}

/* ---- executors and init -------------------------------------------------------------------------- */

aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor *executor)
{
    sim_record_call("aclSetAclOpExecutorRepeatable", "executor=%p", P(executor));
    return sim_executor_set_repeatable(executor);
}

aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor *executor)
{
    sim_record_call("aclDestroyAclOpExecutor", "executor=%p", P(executor));
    return sim_executor_destroy(executor);
}

aclnnStatus aclnnInit(const char *configPath)
{
    sim_record_call("aclnnInit", "configPath=%s", sim_fmt_str(configPath));
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnFinalize(void)
{
    sim_record_call("aclnnFinalize", NULL);
    return ACLNN_SUCCESS;
}
