// 2 OS × 2 Kubernetes variants of testdata/bake/node.yaml, pushed to a registry, sharing one
// registry cache repository: each variant exports its own cache tag (four exports to one tag
// would overwrite each other) and imports all four, so an OS layer is built once per OS and a
// Kubernetes layer once per version.
//   REGISTRY=127.0.0.1:5055 TAG=dev docker buildx bake -f testdata/bake/docker-bake.hcl
// Paths are relative to the directory bake runs in (the repository root); the spec path is
// relative to the context.

variable "REGISTRY" { default = "127.0.0.1:5055" }
variable "TAG" { default = "dev" }
variable "FRONTEND" { default = "nodestamp/frontend:dev" }
variable "CONTEXT" { default = "build/components/context" }
variable "SPEC" { default = "../../../testdata/bake/node.yaml" }

variable "OSES" { default = ["bookworm", "trixie"] }
variable "KUBERNETES_VERSIONS" { default = ["1.31.7", "1.32.3"] }

function "cache" {
  params = [os, k8s]
  result = "type=registry,ref=${REGISTRY}/nodestamp-test/bake-cache:${TAG}-${os}-${replace(k8s, ".", "-")}"
}

group "default" {
  targets = ["node"]
}

target "node" {
  name       = "node-${os}-${replace(k8s, ".", "-")}"
  matrix     = { os = OSES, k8s = KUBERNETES_VERSIONS }
  context    = CONTEXT
  dockerfile = SPEC
  target     = "node"
  args = {
    BUILDKIT_SYNTAX    = FRONTEND
    BASE_IMAGE         = "debian:${os}"
    KUBERNETES_VERSION = k8s
    SOURCE_DATE_EPOCH  = "1700000000"
  }
  tags       = ["${REGISTRY}/nodestamp-test/bake-node:${TAG}-${os}-${replace(k8s, ".", "-")}"]
  output     = ["type=image,push=true"]
  cache-to   = ["${cache(os, k8s)},mode=max"]
  cache-from = flatten([for o in OSES : [for k in KUBERNETES_VERSIONS : cache(o, k)]])
}
