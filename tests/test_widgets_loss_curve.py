from peftlab.widgets.loss_curve import LossCurve


def test_loss_curve_records_and_draws():
    curve = LossCurve()
    for step, loss in [(5, 4.0), (10, 2.5), (15, 1.0)]:
        curve(step, loss)
    assert curve.steps == [5, 10, 15] and curve.losses == [4.0, 2.5, 1.0]
    line = curve.figure().axes[0].lines[0]
    assert list(line.get_xdata()) == [5, 10, 15] and list(line.get_ydata()) == [4.0, 2.5, 1.0]
