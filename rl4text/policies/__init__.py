"""Actor-critic wrappers over Hugging Face causal and encoder-decoder language models."""

from rl4text.policies.actor_critic import ActorCritic, ScoreOutput, observation_logits, sequence_logits

__all__ = ["ActorCritic", "ScoreOutput", "observation_logits", "sequence_logits"]
