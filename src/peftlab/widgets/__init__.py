"""ipywidgets front ends the notebooks show: one module per lesson that has one.

Widgets sit at the top of the package: they may import any other module; nothing but notebooks
imports them. Each holds only the interaction (controls, callbacks, HTML); what a widget computes
comes from the core modules or the lesson modules below it.

- `widgets.memory`: the training-memory calculator (notebook 01)
- `widgets.nf4`: the NF4 block-size explorer (notebook 03)
- `widgets.support`: the before/after playground (notebook 05)
- `widgets.loss_curve`: the training loss drawn as it arrives (notebook 05)
- `widgets.quiz`: flashcards and the mock interview (notebook 06)
"""
