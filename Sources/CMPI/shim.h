// Re-exports the Open MPI handle macros that Swift's ClangImporter cannot see
// (they are casts over &ompi_mpi_* globals). Only CSGDDistributed imports this module.
#ifndef CSGD_MPI_SHIM_H
#define CSGD_MPI_SHIM_H
#include <mpi.h>
static inline MPI_Comm csgd_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype csgd_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype csgd_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype csgd_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype csgd_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype csgd_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op csgd_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op csgd_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op csgd_mpi_min(void) { return MPI_MIN; }
static inline void *csgd_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *csgd_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler csgd_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request csgd_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *csgd_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
/// Reads the integer control variable `name` through MPI_T (0 on success, < 0 if the variable
/// is unknown or unreadable). Call after MPI_Init: components register their variables there.
static inline int csgd_mpi_t_read_int(const char *name, int *value) {
    int provided = 0, index = 0, count = 0, err;
    MPI_T_cvar_handle handle;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return -1;
    err = MPI_T_cvar_get_index(name, &index);
    if (err == MPI_SUCCESS) err = MPI_T_cvar_handle_alloc(index, NULL, &handle, &count);
    if (err == MPI_SUCCESS) {
        err = count == 1 ? MPI_T_cvar_read(handle, value) : MPI_ERR_OTHER;
        MPI_T_cvar_handle_free(&handle);
    }
    MPI_T_finalize();
    return err == MPI_SUCCESS ? 0 : -2;
}
#endif
