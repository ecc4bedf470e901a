// Hungarian method for rectangular cost matrices: see hungarian_matcher.h.
#include "models/losses/hungarian_matcher.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace segrun::models {

Assignment linear_sum_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols) {
  SEGRUN_CHECK(
      rows >= 0 && cols >= 0 && static_cast<int64_t>(cost.size()) == rows * cols, ModelError,
      "linear_sum_assignment: cost has " << cost.size() << " entries for a " << rows << " x " << cols << " matrix");
  for (size_t i = 0; i < cost.size(); ++i)
    SEGRUN_CHECK(std::isfinite(cost[i]), ModelError,
                 "linear_sum_assignment: cost entry (" << i / std::max<int64_t>(cols, 1) << ", "
                                                       << i % std::max<int64_t>(cols, 1) << ") is not finite");
  Assignment out;
  if (rows == 0 || cols == 0) return out;

  // Solve with n <= m: transpose a tall matrix.
  const bool transposed = rows > cols;
  const int64_t n = transposed ? cols : rows;
  const int64_t m = transposed ? rows : cols;
  auto at = [&](int64_t i, int64_t j) { return transposed ? cost[j * cols + i] : cost[i * cols + j]; };

  // 1-based potentials u (rows), v (columns); match[j] = row assigned to column j (0 = none);
  // column 0 is the virtual start of each augmenting path.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), min_slack(m + 1);
  std::vector<int64_t> match(m + 1, 0), previous(m + 1, 0);
  std::vector<char> visited(m + 1);
  for (int64_t row = 1; row <= n; ++row) {
    match[0] = row;
    int64_t j0 = 0;
    std::fill(min_slack.begin(), min_slack.end(), kInf);
    std::fill(visited.begin(), visited.end(), 0);
    do {
      visited[j0] = 1;
      const int64_t i0 = match[j0];
      double delta = kInf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= m; ++j) {
        if (visited[j]) continue;
        const double slack = at(i0 - 1, j - 1) - u[i0] - v[j];
        if (slack < min_slack[j]) {
          min_slack[j] = slack;
          previous[j] = j0;
        }
        if (min_slack[j] < delta) {
          delta = min_slack[j];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= m; ++j) {
        if (visited[j]) {
          u[match[j]] += delta;
          v[j] -= delta;
        } else {
          min_slack[j] -= delta;
        }
      }
      j0 = j1;
    } while (match[j0] != 0);
    // Augment along the path back to the virtual column.
    do {
      const int64_t j1 = previous[j0];
      match[j0] = match[j1];
      j0 = j1;
    } while (j0 != 0);
  }

  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t j = 1; j <= m; ++j) {
    if (match[j] == 0) continue;
    const int64_t i = match[j] - 1;
    pairs.emplace_back(transposed ? j - 1 : i, transposed ? i : j - 1);
  }
  std::sort(pairs.begin(), pairs.end());
  for (const auto& [r, c] : pairs) {
    out.rows.push_back(r);
    out.cols.push_back(c);
  }
  return out;
}

}  // namespace segrun::models
