#pragma once
// Minimum-cost linear assignment (the Hungarian method, shortest-augmenting-path form with row
// and column potentials, O(n^2 m) for n <= m), in plain C++ with no torch dependency. Mask2Former's
// matcher uses it to pair predicted queries with ground-truth masks.
// Contract (the same as scipy.optimize.linear_sum_assignment):
//  - `cost` is row-major [rows x cols]; every entry must be finite (ModelError otherwise);
//  - min(rows, cols) pairs are returned, each row and each column used at most once, with the
//    minimum total cost; pairs are sorted by row index; rows == 0 or cols == 0 gives no pairs;
//  - with ties any optimal assignment may be returned (its total equals scipy's).
// Pure function; thread-safe.

#include <cstdint>
#include <utility>
#include <vector>

namespace segrun::models {

struct Assignment {
  std::vector<int64_t> rows;  // ascending
  std::vector<int64_t> cols;  // cols[i] is assigned to rows[i]
};

Assignment linear_sum_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols);

}  // namespace segrun::models
