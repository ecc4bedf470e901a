#pragma once
// Private to dist/: turns an MPI return code into a DistError carrying the operation, the rank,
// the host and MPI's own message. Include only from dist/*.cpp (it includes mpi.h).

#include <mpi.h>
#include <unistd.h>

#include <string>

#include "core/error.h"

namespace segrun::dist {

inline std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

inline void throw_mpi_error(int code, const char* operation) {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  throw DistError(std::string(operation) + " failed on rank " + std::to_string(rank) + " (" + host +
                  "): " + mpi_error_string(code));
}

}  // namespace segrun::dist

#define SEGRUN_MPI_CHECK(call, operation)                                                          \
  do {                                                                                             \
    int segrun_mpi_rc_ = (call);                                                                   \
    if (segrun_mpi_rc_ != MPI_SUCCESS) ::segrun::dist::throw_mpi_error(segrun_mpi_rc_, operation); \
  } while (0)
