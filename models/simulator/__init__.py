"""A synthetic English school year for training, evaluation, demos and benchmarks.

    from models.simulator import SimulationConfig, simulate_year, iter_days
"""

from models.simulator.calendar import SchoolCalendar
from models.simulator.generate import SimulationConfig, SimulationSummary, iter_days, simulate_year

__all__ = ["SchoolCalendar", "SimulationConfig", "SimulationSummary", "iter_days", "simulate_year"]
