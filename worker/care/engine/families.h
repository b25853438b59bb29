// Every model family the engine runs, for ParseModelConfig, LoadModelConfig
// and io::OpenModel: `io::OpenModel(dir, engine::Families())`. Each family
// is one file under families/ and one row of the table in families.cc
// (docs/architecture.md, "How to add a model family").
#ifndef CARE_ENGINE_FAMILIES_H_
#define CARE_ENGINE_FAMILIES_H_

#include "care/io/model_config.h"

namespace care::engine {

ModelFamilies Families();

}  // namespace care::engine

#endif  // CARE_ENGINE_FAMILIES_H_
