#include "launcher/mpi_holder.h"

#include <opencv2/core/utility.hpp>

#include "core/log.h"

namespace segrun::launcher {

const dist::RankContext& MpiHolder::context() {
  if (!session_) {
    session_ = std::make_unique<dist::MpiSession>(argc_, argv_);
    dist::check_launched_world(session_->context());
    cv::setNumThreads(1);
  }
  return session_->context();
}

void init_rank_logging(const dist::RankContext& context, const std::string& level) {
  log::LogOptions options;
  options.rank = context.world_rank;
  options.world = context.world_size;
  options.level = level;
  log::init_logging(options);
}

}  // namespace segrun::launcher
