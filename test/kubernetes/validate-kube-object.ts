import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { RuntimeClass } from 'kubernetes-models/node.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Binding, ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
// DeleteOptions is a meta/v1 type; kubernetes-models takes it from its apimachinery package.
import { DeleteOptions } from '@kubernetes-models/apimachinery/apis/meta/v1/DeleteOptions';

/** A kubernetes-models class: constructed from a plain object, validate() throws on a schema violation. */
type Model = new (data: any) => { validate(): void };

const MODELS: Record<string, Model> = {
  'v1/Pod': Pod,
  // The pods/binding body of binding mode.
  'v1/Binding': Binding,
  // The body of every DELETE the runtime sends (the server accepts it under "v1").
  'v1/DeleteOptions': DeleteOptions,
  'v1/Namespace': Namespace,
  'v1/ResourceQuota': ResourceQuota,
  'v1/LimitRange': LimitRange,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'apps/v1/Deployment': Deployment,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'node.k8s.io/v1/RuntimeClass': RuntimeClass,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
};

/**
 * Validates one object offline against the official Kubernetes OpenAPI schemas, as
 * packaged by kubernetes-models (4.5.x, Kubernetes 1.3x). Throws with the schema errors,
 * or when the kind is not in the table (so a new kind cannot slip through unvalidated).
 * Note: the schemas do not forbid unknown fields; the tests check field names they care
 * about explicitly.
 */
export function validateKubeObject(object: { apiVersion?: string; kind?: string; metadata?: { name?: string } }): void {
  const key = `${object.apiVersion}/${object.kind}`;
  const model = MODELS[key];
  if (!model) throw new Error(`no schema model for ${key} (${object.metadata?.name}); add it to validate-kube-object.ts`);
  try {
    new model(object).validate();
  } catch (err) {
    throw new Error(`${key} "${object.metadata?.name}" fails the Kubernetes schema: ${(err as Error).message}`);
  }
}
