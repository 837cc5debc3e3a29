/** Every score plugin returns 0..MAX_NODE_SCORE before its weight is applied (kube-scheduler's MaxNodeScore). */
export const MAX_NODE_SCORE = 100;
