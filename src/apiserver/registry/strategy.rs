//! What makes one resource different from another: defaulting, validation and the hooks around
//! create, update and delete. Mirrors upstream's `RESTCreateStrategy` / `RESTUpdateStrategy`
//! (`k8s.io/apiserver/pkg/registry/rest`); the generic registry does everything else.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::validation::{FieldError, NameRule};
use crate::apiserver::printers::Column;
use crate::apiserver::status::Error;

/// A k8s-openapi object type the registry can store.
pub(crate) trait ApiObject:
    k8s_openapi::Resource
    + schemars::JsonSchema
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> ApiObject for T where
    T: k8s_openapi::Resource
        + schemars::JsonSchema
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Per-resource behaviour. Every method has the upstream default, so a plain resource such as
/// ConfigMap needs no more than `type Object`.
///
/// Methods that take `&Self::Object` cannot change it; those that may mutate say so by taking
/// `&mut`. All are called with no lock held and must not block; the allocation hooks are async.
pub(crate) trait Strategy: Send + Sync + 'static {
    /// The stored type.
    type Object: ApiObject;

    /// The rule `metadata.name` must follow.
    const NAME_RULE: NameRule = NameRule::Subdomain;
    /// Whether `metadata.generation` starts at 1 and grows with every change of `spec`.
    const GENERATION: bool = false;
    /// Whether a create keeps the `status` the client sent (nodes do; most resources clear it).
    const KEEP_STATUS_ON_CREATE: bool = false;
    /// Whether a PUT of a missing object creates it.
    const CREATE_ON_UPDATE: bool = false;
    /// Whether DELETE answers with the deleted object rather than a success Status.
    const RETURN_DELETED_OBJECT: bool = false;
    /// Whether a write to `/status` also takes the client's `metadata.annotations`, as upstream's
    /// Deployment status strategy does (it resets only spec and labels): the deployment
    /// controller writes its revision annotation with the status.
    const STATUS_UPDATES_ANNOTATIONS: bool = false;
    /// Fields beyond `metadata.name` and `metadata.namespace` that field selectors may name.
    const SELECTABLE_FIELDS: &'static [&'static str] = &[];

    /// Whether an update from `old` to `new` (both as JSON) is a new generation; by default a
    /// change of `spec`. Only asked when `GENERATION` is set.
    fn changes_generation(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    /// Fills in defaults. Called on every create and update, like upstream's `SetDefaults_*`.
    fn default(&self, _obj: &mut Self::Object) {}

    /// Resets what a client may not set at creation (status, for one).
    fn prepare_for_create(&self, _obj: &mut Self::Object) {}

    /// Carries over from `old` what an update may not change.
    fn prepare_for_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}

    /// Checks a new object. Metadata is checked by the registry.
    fn validate(&self, _obj: &Self::Object) -> Vec<FieldError> {
        Vec::new()
    }

    /// Checks an update; by default the new object is validated as if created.
    fn validate_update(&self, new: &Self::Object, _old: &Self::Object) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Takes what the object needs from shared ranges (a Service's ClusterIP) before it is
    /// stored; `old` is the stored version on update, whose allocations are already held. May
    /// write to the store (the ranges live there).
    fn allocate(
        &self,
        _obj: &mut Self::Object,
        _old: Option<&Self::Object>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }

    /// Gives back what `allocate` took, when the object is deleted or its create failed.
    fn release(&self, _obj: &Self::Object) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// After an update, gives back what `dropped` holds and `kept` does not. Called with
    /// (new, old) when the update was stored and with (old, new) when it was not.
    fn release_unused(&self, _kept: &Self::Object, _dropped: &Self::Object) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Puts an object that is being deleted into its terminating state. Returns `true` when the
    /// deletion must wait for more than `metadata.finalizers` (a namespace's `spec.finalizers`).
    fn prepare_for_delete(&self, _obj: &mut Self::Object) -> bool {
        false
    }

    /// Whether a terminating object must still wait before it is removed.
    fn blocks_deletion(&self, _obj: &Self::Object) -> bool {
        false
    }

    /// `pods/binding`: assigns the object to the node a Binding names.
    fn bind(&self, _obj: &mut Self::Object, _binding: &Value) -> Result<(), Error> {
        Err(Error::MethodNotAllowed)
    }

    /// The grace period a DELETE without one gets, or `None` to delete at once (pods wait for
    /// their kubelet; everything else goes immediately).
    fn grace_period(&self, _obj: &Self::Object, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// The table columns `kubectl get` prints; `None` for upstream's default Name/Created At.
    fn columns(&self) -> Option<&'static [Column]> {
        None
    }

    /// One table row, matching `columns`.
    fn cells(&self, _obj: &Self::Object) -> Vec<Value> {
        Vec::new()
    }
}
